//! A strict reader for OpenWrt's UCI file format (`/etc/config/*`).
//!
//! ```text
//! config TYPE ['NAME']         # a section; anonymous without a name (@TYPE[N])
//!     option KEY 'value'       # one value
//!     list KEY 'value'         # appends to a list
//! ```
//! Values are bare words, 'single-quoted' (taken literally) or "double-quoted" (a
//! backslash escapes the next character); adjacent pieces join ('a'"b"c is abc). `#`
//! starts a comment outside quotes. Stricter than libuci where libuci guesses: a quote
//! must close on its line, an option may not be given twice, a key is either an option or
//! a list, and two sections may not share a name. Every error carries its line.
//!
//! Sections are found by name and options by key through hash indexes kept beside them,
//! so reading is linear in the file: with a search of the sections before it for each
//! name, 100k named sections did not finish in a minute, and 100k options took 52 s.

use std::collections::HashMap;

use super::{shown_uci, ParseError};

/// Longest section name, type or option name we accept.
const NAME_MAX: usize = 64;
/// Longest value (libuci has no limit; a config value this long is a mistake).
const VALUE_MAX: usize = 4096;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UciFile {
    pub sections: Vec<Section>,
    /// Index in `sections` of each named section.
    names: HashMap<String, usize>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Section {
    pub ty: String,
    pub name: Option<String>,
    pub line: usize,
    pub options: Vec<UciOption>,
    /// Index in `options` of each key, once there are more than `INDEX_FROM` options: a
    /// search of a few is as quick, and a map in each of 100k small sections cost 20 MB.
    keys: Option<HashMap<String, usize>>,
}

/// Options a section holds before its keys are indexed.
const INDEX_FROM: usize = 16;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UciOption {
    pub key: String,
    pub value: UciValue,
    pub line: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UciValue {
    Single(String),
    /// Items with the line each came from.
    List(Vec<(String, usize)>),
}

impl Section {
    pub fn get(&self, key: &str) -> Option<&UciOption> {
        self.position(key).map(|i| &self.options[i])
    }

    fn position(&self, key: &str) -> Option<usize> {
        match &self.keys {
            Some(keys) => keys.get(key).copied(),
            None => self.options.iter().position(|o| o.key == key),
        }
    }

    /// A single value (`option`).
    pub fn single(&self, key: &str) -> Option<(&str, usize)> {
        match self.get(key) {
            Some(UciOption {
                value: UciValue::Single(v),
                line,
                ..
            }) => Some((v.as_str(), *line)),
            _ => None,
        }
    }

    /// The items of a key, whether given as a `list` or as an `option` holding
    /// space-separated words (older OpenWrt configs write `option network 'lan wan6'`).
    pub fn items(&self, key: &str) -> Vec<(String, usize)> {
        match self.get(key) {
            Some(UciOption {
                value: UciValue::List(v),
                ..
            }) => v.clone(),
            Some(UciOption {
                value: UciValue::Single(v),
                line,
                ..
            }) => v
                .split_whitespace()
                .map(|s| (s.to_string(), *line))
                .collect(),
            None => Vec::new(),
        }
    }
}

impl UciFile {
    /// Sections of a type, in file order (`@TYPE[N]` is the Nth).
    pub fn of_type<'a>(&'a self, ty: &'a str) -> impl Iterator<Item = &'a Section> + 'a {
        self.sections.iter().filter(move |s| s.ty == ty)
    }

    /// A section by name, or by `@TYPE[N]` (N may be negative: -1 is the last).
    pub fn section(&self, address: &str) -> Option<&Section> {
        if let Some(rest) = address.strip_prefix('@') {
            let (ty, index) = rest.strip_suffix(']')?.split_once('[')?;
            let index: i64 = index.parse().ok()?;
            let all: Vec<&Section> = self.sections.iter().filter(|s| s.ty == ty).collect();
            let i = if index < 0 {
                all.len() as i64 + index
            } else {
                index
            };
            return usize::try_from(i).ok().and_then(|i| all.get(i).copied());
        }
        self.named(address)
    }

    /// The section of this name (no `@TYPE[N]` addresses).
    pub fn named(&self, name: &str) -> Option<&Section> {
        self.names.get(name).map(|&i| &self.sections[i])
    }
}

/// Parses UCI text.
pub fn parse_uci(text: &str) -> Result<UciFile, ParseError> {
    let mut sections: Vec<Section> = Vec::new();
    let mut names: HashMap<String, usize> = HashMap::new();
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let err = |m: String| ParseError::new(line, m);
        let words = split_words(raw).map_err(err)?;
        let Some((keyword, args)) = words.split_first() else {
            continue;
        };
        match keyword.as_str() {
            "package" => {
                if args.len() != 1 {
                    return Err(err("`package` takes one name".into()));
                }
            }
            "config" => {
                let (ty, name) =
                    match args {
                        [ty] => (ty, None),
                        [ty, name] => (ty, Some(name)),
                        _ => return Err(err(
                            "`config` takes a type and an optional name, e.g. config zone 'lan'"
                                .into(),
                        )),
                    };
                check_name("section type", ty).map_err(err)?;
                if let Some(n) = name {
                    check_name("section name", n).map_err(err)?;
                    if let Some(&first) = names.get(n.as_str()) {
                        return Err(err(format!(
                            "section '{n}' is defined twice (first at line {}); give each section its own name",
                            sections[first].line
                        )));
                    }
                    names.insert(n.clone(), sections.len());
                }
                sections.push(Section {
                    ty: ty.clone(),
                    name: name.cloned(),
                    line,
                    options: Vec::new(),
                    keys: None,
                });
            }
            kw @ ("option" | "list") => {
                let Some(section) = sections.last_mut() else {
                    return Err(err(format!("`{kw}` before any `config` line")));
                };
                let [key, value] = args else {
                    return Err(err(format!("`{kw}` takes a name and one value, e.g. {kw} device 'eth0' (quote values with spaces)")));
                };
                check_name("option name", key).map_err(err)?;
                if value.len() > VALUE_MAX {
                    return Err(err(format!(
                        "value of '{key}' is longer than {VALUE_MAX} bytes"
                    )));
                }
                add_option(section, kw == "list", key, value, line).map_err(err)?;
            }
            other => {
                return Err(err(format!(
                    "unknown keyword {} (expected config, option or list)",
                    shown_uci(other)
                )))
            }
        }
    }
    Ok(UciFile { sections, names })
}

fn add_option(
    s: &mut Section,
    list: bool,
    key: &str,
    value: &str,
    line: usize,
) -> Result<(), String> {
    match (s.position(key).map(|i| &mut s.options[i]), list) {
        (None, list) => {
            let value = if list {
                UciValue::List(vec![(value.into(), line)])
            } else {
                UciValue::Single(value.into())
            };
            s.options.push(UciOption {
                key: key.into(),
                value,
                line,
            });
            let last = s.options.len() - 1;
            match &mut s.keys {
                Some(keys) => {
                    keys.insert(key.into(), last);
                }
                None if s.options.len() > INDEX_FROM => {
                    let keys = s.options.iter().enumerate();
                    s.keys = Some(keys.map(|(i, o)| (o.key.clone(), i)).collect());
                }
                None => {}
            }
        }
        (Some(o), true) if matches!(o.value, UciValue::List(_)) => {
            if let UciValue::List(v) = &mut o.value {
                v.push((value.into(), line));
            }
        }
        (Some(o), true) => {
            return Err(format!(
                "'{key}' is an option (line {}) and a list here; use `list` for every item",
                o.line
            ))
        }
        (Some(o), false) => {
            return Err(format!(
                "option '{key}' is given twice in this section (first at line {})",
                o.line
            ))
        }
    }
    Ok(())
}

/// UCI names: letters, digits and `_` (libuci's uci_validate_name); we also allow `-`,
/// which OpenWrt uses in some section names.
fn check_name(what: &str, s: &str) -> Result<(), String> {
    if s.is_empty() || s.len() > NAME_MAX {
        return Err(format!("{what} must be 1 to {NAME_MAX} characters"));
    }
    if let Some(c) = s
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '_' || *c == '-'))
    {
        return Err(format!(
            "{what} '{s}' contains '{c}' (only letters, digits, _ and -)"
        ));
    }
    Ok(())
}

/// Splits one line into words, resolving quotes and escapes.
fn split_words(line: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut chars = line.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        match chars.peek() {
            None | Some('#') => return Ok(words),
            _ => {}
        }
        let mut word = String::new();
        while let Some(&c) = chars.peek() {
            match c {
                c if c.is_whitespace() => break,
                '\'' => {
                    chars.next();
                    loop {
                        match chars.next() {
                            Some('\'') => break,
                            Some(c) => word.push(c),
                            None => {
                                return Err(
                                    "unterminated ' quote (quotes must close on the same line)"
                                        .into(),
                                )
                            }
                        }
                    }
                }
                '"' => {
                    chars.next();
                    loop {
                        match chars.next() {
                            Some('"') => break,
                            Some('\\') => match chars.next() {
                                Some(c) => word.push(c),
                                None => return Err(
                                    "unterminated \" quote (quotes must close on the same line)"
                                        .into(),
                                ),
                            },
                            Some(c) => word.push(c),
                            None => {
                                return Err(
                                    "unterminated \" quote (quotes must close on the same line)"
                                        .into(),
                                )
                            }
                        }
                    }
                }
                '\\' => {
                    chars.next();
                    match chars.next() {
                        Some(c) => word.push(c),
                        None => return Err(
                            "a backslash at the end of a line (line continuation is not supported)"
                                .into(),
                        ),
                    }
                }
                c => {
                    chars.next();
                    word.push(c);
                }
            }
        }
        words.push(word);
    }
}

#[cfg(test)]
#[path = "uci_tests.rs"]
mod tests;
