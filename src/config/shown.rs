//! How config errors show the values they are about: whole when short, else a prefix and
//! the length. A config value can be megabytes (a 10 MB value was echoed whole into the
//! log and, twice over, into `status --json`); errors go to the log, `check`, `status` and
//! the terminal, one line each.

use std::fmt;

/// Characters of a value an error shows before it cuts.
const PREFIX: usize = 64;

/// A value in an error message, quoted: `"eth0"`, or `"xxxx…" (10485760 bytes)` past
/// 64 characters. Control characters are escaped, so the message stays on one line.
pub(crate) struct Shown<'a> {
    value: &'a str,
    /// `"` escapes like Rust's `{:?}` (the TOML messages); `'` is UCI's quote and keeps
    /// the value as written except control characters (the UCI messages).
    quote: char,
}

/// `"value"`, as `{:?}` writes it (TOML errors).
pub(crate) fn shown(value: &str) -> Shown<'_> {
    Shown { value, quote: '"' }
}

/// `'value'` (UCI errors).
pub(crate) fn shown_uci(value: &str) -> Shown<'_> {
    Shown { value, quote: '\'' }
}

impl fmt::Display for Shown<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let cut = self.value.char_indices().nth(PREFIX).map(|(i, _)| i);
        let part = &self.value[..cut.unwrap_or(self.value.len())];
        if self.quote == '"' {
            write!(f, "{part:?}")?;
        } else {
            f.write_str("'")?;
            for c in part.chars() {
                if c.is_control() {
                    write!(f, "{}", c.escape_debug())?;
                } else {
                    write!(f, "{c}")?;
                }
            }
            f.write_str("'")?;
        }
        if cut.is_some() {
            write!(f, "… ({} bytes)", self.value.len())?;
        }
        Ok(())
    }
}

/// Names for a "known: ..." or "there: ..." list: all of them when few, else the first
/// eight and how many there are (a firewall file may hold thousands of zones).
pub(crate) fn some_of(names: &[String], what: &str) -> String {
    const FIRST: usize = 8;
    let first: Vec<String> = names.iter().take(FIRST).map(|n| shown_bare(n)).collect();
    if names.len() <= FIRST {
        first.join(", ")
    } else {
        format!("{}, … ({} {what})", first.join(", "), names.len())
    }
}

/// A name without quotes, cut like `Shown` (names in lists are written bare).
fn shown_bare(name: &str) -> String {
    let mut out = String::new();
    for (i, c) in name.chars().enumerate() {
        if i == PREFIX {
            out.push('…');
            break;
        }
        if c.is_control() {
            out.extend(c.escape_debug());
        } else {
            out.push(c);
        }
    }
    out
}

/// Cuts every quoted part (`"..."`, as serde writes a string, or `` `...` ``, as it writes
/// a field name) longer than `Shown` shows: the TOML library's messages carry the
/// offending value or key whole (`invalid type: string "…", expected a boolean`). The
/// length given is that of the quoted text as written in the message.
pub(crate) fn clip_quoted(message: &str) -> String {
    let mut out = String::with_capacity(message.len().min(512));
    let mut rest = message;
    while let Some(open) = rest.find(['"', '`']) {
        let quote = rest.as_bytes()[open];
        out.push_str(&rest[..=open]);
        let inner = &rest[open + 1..];
        let close = closing(inner, quote);
        let text = &inner[..close.unwrap_or(inner.len())];
        match text.char_indices().nth(PREFIX) {
            // Cut at a char boundary; an escape (`\u{..}`) may be cut in half, which
            // only shortens what is shown.
            Some((cut, _)) => {
                out.push_str(&text[..cut]);
                out.push(quote as char);
                out.push_str(&format!("… ({} bytes)", text.len()));
            }
            None => {
                out.push_str(text);
                if close.is_some() {
                    out.push(quote as char);
                }
            }
        }
        rest = match close {
            Some(c) => &inner[c + 1..],
            None => "",
        };
    }
    out.push_str(rest);
    out
}

/// Offset of the quote that closes a quoted part (`"` honours backslash escapes).
fn closing(inner: &str, quote: u8) -> Option<usize> {
    let bytes = inner.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' if quote == b'"' => i += 2,
            b if b == quote => return Some(i),
            _ => i += 1,
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_values_are_shown_whole_long_ones_cut() {
        assert_eq!(shown("eth0").to_string(), "\"eth0\"");
        assert_eq!(shown("a\"b\n").to_string(), "\"a\\\"b\\n\"");
        assert_eq!(shown_uci("it's").to_string(), "'it's'");
        assert_eq!(shown_uci("a\tb").to_string(), "'a\\tb'");
        let long = "é".repeat(1000);
        let s = shown(&long).to_string();
        assert_eq!(s, format!("\"{}\"… (2000 bytes)", "é".repeat(64)));
        let s = shown_uci(&"x".repeat(65)).to_string();
        assert_eq!(s, format!("'{}'… (65 bytes)", "x".repeat(64)));
        assert_eq!(shown(&"x".repeat(64)).to_string().len(), 66);
    }

    #[test]
    fn lists_of_many_names_show_the_first_eight() {
        let names: Vec<String> = (0..3).map(|i| format!("z{i}")).collect();
        assert_eq!(some_of(&names, "zones"), "z0, z1, z2");
        let names: Vec<String> = (0..1000).map(|i| format!("z{i}")).collect();
        assert_eq!(
            some_of(&names, "zones"),
            "z0, z1, z2, z3, z4, z5, z6, z7, … (1000 zones)"
        );
    }

    #[test]
    fn quoted_parts_of_library_messages_are_cut() {
        let long = "x".repeat(100);
        let m = format!("invalid type: string \"{long}\", expected a boolean");
        assert_eq!(
            clip_quoted(&m),
            format!(
                "invalid type: string \"{}\"… (100 bytes), expected a boolean",
                "x".repeat(64)
            )
        );
        let m = format!("unknown field `{long}`, expected one of `mode`, `offload`");
        assert!(clip_quoted(&m).ends_with("… (100 bytes), expected one of `mode`, `offload`"));
        let m = "a \"short \\\" one\" and `x`";
        assert_eq!(clip_quoted(m), m);
        assert_eq!(clip_quoted("unterminated \"abc"), "unterminated \"abc");
    }
}
