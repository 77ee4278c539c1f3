//! The TOML source (`/etc/offloadd/offloadd.toml`, any distribution).
//!
//! Deserialises into raw structs that keep each value's span, then validates into
//! `Config`, so both syntax and meaning errors carry the line they were found on.

use std::collections::BTreeSet;
use std::ops::Range;

use serde::Deserialize;
use toml::Spanned;

use super::check_priority;
use super::shown::clip_quoted;
use super::values::parse_duration;
use super::{
    list_too_long, shown, Config, Exclude, FlushOn, Hardware, Mode, ParseError, MAX_EVENT_BUFFER,
    MAX_EXCLUDE_LIST, MIN_EVENT_BUFFER,
};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    mode: Option<Spanned<String>>,
    offload: Option<RawOffload>,
    conntrack: Option<RawConntrack>,
    timeouts: Option<RawTimeouts>,
    metrics: Option<super::metrics::RawMetrics>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOffload {
    devices: Option<Vec<Spanned<String>>>,
    l3_devices: Option<Spanned<std::collections::BTreeMap<String, Vec<Spanned<String>>>>>,
    hardware: Option<Spanned<String>>,
    priority: Option<Spanned<i64>>,
    counter: Option<bool>,
    flush_on_firewall_change: Option<Spanned<BoolOrWord>>,
    exclude: Option<Vec<Spanned<RawExclude>>>,
}

/// `true`/`false` (earlier versions) or a word.
#[derive(Deserialize)]
#[serde(untagged)]
enum BoolOrWord {
    Bool(bool),
    Word(String),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawExclude {
    l4proto: Option<Spanned<String>>,
    sport: Option<Vec<Spanned<String>>>,
    dport: Option<Vec<Spanned<String>>>,
    saddr: Option<Vec<Spanned<String>>>,
    daddr: Option<Vec<Spanned<String>>>,
    mark: Option<Spanned<String>>,
    iif: Option<Vec<Spanned<String>>>,
    oif: Option<Vec<Spanned<String>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConntrack {
    resync_interval: Option<Spanned<String>>,
    event_buffer: Option<Spanned<toml::Value>>,
    accounting: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTimeouts {
    tcp: Option<Spanned<String>>,
    udp: Option<Spanned<String>>,
}

/// Longest interface name the kernel accepts (IFNAMSIZ - 1).
const IFNAME_MAX: usize = 15;

/// Parses TOML text into a `Config`. Errors carry the 1-based line.
pub fn parse_toml(text: &str) -> Result<Config, ParseError> {
    let lines = Lines::new(text);
    let raw: RawConfig = toml::from_str(text).map_err(|e| {
        let line = e.span().map_or(0, |s| lines.of(s.start));
        // The library's message may quote the offending value or key whole.
        ParseError::new(
            line,
            clip_quoted(&e.message().trim_end().replace('\n', "; ")),
        )
    })?;
    let at = |span: Range<usize>| lines.of(span.start);
    let mut cfg = Config::default();

    if let Some(m) = raw.mode {
        cfg.mode = match m.get_ref().as_str() {
            "auto" => Mode::Auto,
            "manage" => Mode::Manage,
            "observe" => Mode::Observe,
            other => {
                return Err(ParseError::new(
                    at(m.span()),
                    format!(
                        "mode {} is not valid: use \"auto\", \"manage\" or \"observe\"",
                        shown(other)
                    ),
                ))
            }
        };
    }

    if let Some(o) = raw.offload {
        let mut seen = BTreeSet::new();
        for d in o.devices.unwrap_or_default() {
            let name = d.get_ref();
            if let Err(why) = check_ifname(name) {
                return Err(ParseError::new(at(d.span()), why));
            }
            if !seen.insert(name.clone()) {
                return Err(ParseError::new(
                    at(d.span()),
                    format!("device {} is listed twice", shown(name)),
                ));
            }
            cfg.offload.devices.push(name.clone());
        }
        if let Some(l3) = o.l3_devices {
            let line = at(l3.span());
            for (dev, names) in l3.into_inner() {
                if !seen.contains(&dev) {
                    return Err(ParseError::new(
                        line,
                        format!("l3_devices names {}, which is not in devices: list the device it runs over in devices", shown(&dev)),
                    ));
                }
                let mut v = Vec::new();
                for n in names {
                    check_ifname(n.get_ref()).map_err(|why| ParseError::new(at(n.span()), why))?;
                    v.push(n.into_inner());
                }
                cfg.offload.l3_devices.insert(dev, v);
            }
        }
        if let Some(h) = o.hardware {
            cfg.offload.hardware = match h.get_ref().as_str() {
                "off" => Hardware::Off,
                "auto" => Hardware::Auto,
                "require" => Hardware::Require,
                other => {
                    return Err(ParseError::new(
                        at(h.span()),
                        format!(
                            "hardware {} is not valid: use \"off\", \"auto\" or \"require\"",
                            shown(other)
                        ),
                    ))
                }
            };
        }
        if let Some(f) = o.flush_on_firewall_change {
            let line = at(f.span());
            cfg.offload.flush_on_change = match f.into_inner() {
                BoolOrWord::Bool(b) => FlushOn::parse(&b.to_string()),
                BoolOrWord::Word(w) => FlushOn::parse(&w),
            }
            .map_err(|m| ParseError::new(line, m))?;
        }
        if let Some(p) = o.priority {
            cfg.offload.priority =
                Some(check_priority(*p.get_ref()).map_err(|m| ParseError::new(at(p.span()), m))?);
        }
        if let Some(c) = o.counter {
            cfg.offload.counter = c;
        }
        for e in o.exclude.unwrap_or_default() {
            let line = at(e.span());
            cfg.offload
                .exclude
                .push(exclude(&lines, line, e.into_inner())?);
        }
    }

    if let Some(c) = raw.conntrack {
        if let Some(r) = c.resync_interval {
            let d = parse_duration(r.get_ref()).map_err(|m| ParseError::new(at(r.span()), m))?;
            if d.as_millis() < 100 || d.as_secs() > 3600 {
                return Err(ParseError::new(
                    at(r.span()),
                    "resync_interval must be between 100ms and 1h",
                ));
            }
            cfg.conntrack.resync_interval = d;
        }
        if let Some(b) = c.event_buffer {
            let n = b.get_ref().as_integer().ok_or_else(|| {
                ParseError::new(
                    at(b.span()),
                    "event_buffer must be an integer number of bytes, e.g. 4194304",
                )
            })?;
            if !(MIN_EVENT_BUFFER as i64..=MAX_EVENT_BUFFER as i64).contains(&n) {
                return Err(ParseError::new(
                    at(b.span()),
                    format!("event_buffer must be between {MIN_EVENT_BUFFER} and {MAX_EVENT_BUFFER} bytes"),
                ));
            }
            cfg.conntrack.event_buffer = Some(n as usize);
        }
        cfg.conntrack.accounting = c.accounting.unwrap_or(false);
    }

    if let Some(t) = raw.timeouts {
        cfg.timeouts.tcp = timeout(&lines, t.tcp)?;
        cfg.timeouts.udp = timeout(&lines, t.udp)?;
    }
    if let Some(m) = raw.metrics {
        cfg.metrics = m.validate(at)?;
    }
    Ok(cfg)
}

fn exclude(lines: &Lines, line: usize, raw: RawExclude) -> Result<Exclude, ParseError> {
    // The lists multiply into rules: one longer than MAX_EXCLUDE_LIST is refused before
    // any item is parsed, on the first item over in the file.
    let over = [
        ("sport", &raw.sport),
        ("dport", &raw.dport),
        ("saddr", &raw.saddr),
        ("daddr", &raw.daddr),
        ("iif", &raw.iif),
        ("oif", &raw.oif),
    ]
    .into_iter()
    .filter_map(|(key, items)| Some((items.as_ref()?.get(MAX_EXCLUDE_LIST)?.span().start, key)))
    .min();
    if let Some((at, key)) = over {
        return Err(ParseError::new(lines.of(at), list_too_long(key)));
    }
    let l4proto = match raw.l4proto {
        Some(p) => Some(
            p.get_ref()
                .parse()
                .map_err(|m| ParseError::new(lines.of(p.span().start), m))?,
        ),
        None => None,
    };
    let mark = match raw.mark {
        Some(m) => Some(
            m.get_ref()
                .parse()
                .map_err(|e| ParseError::new(lines.of(m.span().start), e))?,
        ),
        None => None,
    };
    let devices = |items: Option<Vec<Spanned<String>>>| -> Result<Vec<String>, ParseError> {
        items
            .unwrap_or_default()
            .into_iter()
            .map(|d| {
                let n = d.get_ref();
                if n.is_empty() || n.len() > IFNAME_MAX || n.contains(['/', ' ', '"']) {
                    Err(ParseError::new(
                        lines.of(d.span().start),
                        format!(
                            "{} is not a valid interface name (1 to {IFNAME_MAX} characters)",
                            shown(n)
                        ),
                    ))
                } else {
                    Ok(d.into_inner())
                }
            })
            .collect()
    };
    let e = Exclude {
        line,
        l4proto,
        sport: list(lines, raw.sport)?,
        dport: list(lines, raw.dport)?,
        saddr: list(lines, raw.saddr)?,
        daddr: list(lines, raw.daddr)?,
        mark,
        iif: devices(raw.iif)?,
        oif: devices(raw.oif)?,
    };
    if e.matches_everything() {
        return Err(ParseError::new(
            line,
            "exclude entry matches everything: give at least one of l4proto, sport, dport, saddr, daddr, mark, iif, oif",
        ));
    }
    Ok(e)
}

/// A list of values, each error on the line of its item.
fn list<T: std::str::FromStr<Err = String>>(
    lines: &Lines,
    items: Option<Vec<Spanned<String>>>,
) -> Result<Vec<T>, ParseError> {
    items
        .unwrap_or_default()
        .into_iter()
        .map(|s| {
            s.get_ref()
                .parse()
                .map_err(|m| ParseError::new(lines.of(s.span().start), m))
        })
        .collect()
}

fn timeout(
    lines: &Lines,
    v: Option<Spanned<String>>,
) -> Result<Option<std::time::Duration>, ParseError> {
    let Some(v) = v else { return Ok(None) };
    let line = lines.of(v.span().start);
    let d = parse_duration(v.get_ref()).map_err(|m| ParseError::new(line, m))?;
    // The sysctl takes whole seconds (proc_dointvec_jiffies in nf_flow_table_core.c).
    if d.as_secs() == 0 || d.subsec_millis() != 0 || d.as_secs() > i32::MAX as u64 / 1000 {
        return Err(ParseError::new(
            line,
            "flowtable timeouts are whole seconds from 1s up, like \"30s\"",
        ));
    }
    Ok(Some(d))
}

/// Interface names as the kernel accepts them (dev_valid_name in net/core/dev.c).
pub(crate) fn check_ifname(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= IFNAME_MAX
        && name != "."
        && name != ".."
        && !name
            .chars()
            .any(|c| c == '/' || c == ':' || c.is_whitespace() || c.is_control());
    if ok {
        Ok(())
    } else {
        Err(format!(
            "device {} is not a valid interface name (1-15 characters, no '/', ':' or spaces; see `ip link`)",
            shown(name)
        ))
    }
}

/// 1-based line numbers of byte offsets (the spans the TOML library gives).
///
/// Counting newlines from byte 0 for every value made 10k exclusions take 14 s. Here the
/// newlines before each 1 KiB block are counted once, and a lookup counts only within its
/// block: constant time, and 8 bytes of table a KiB of text whatever the file's shape (a
/// table of every line start would cost 8 bytes a line: 80 MB for 10 MB of blank lines).
struct Lines<'a> {
    text: &'a [u8],
    /// Newlines before block i (bytes `i * BLOCK ..`); one more entry than blocks.
    before: Vec<usize>,
}

impl<'a> Lines<'a> {
    const BLOCK: usize = 1024;

    fn new(text: &'a str) -> Lines<'a> {
        let text = text.as_bytes();
        let mut before = Vec::with_capacity(text.len() / Self::BLOCK + 2);
        let mut n = 0;
        for block in text.chunks(Self::BLOCK) {
            before.push(n);
            n += newlines(block);
        }
        before.push(n);
        Lines { text, before }
    }

    /// The 1-based line of byte `offset`.
    fn of(&self, offset: usize) -> usize {
        let offset = offset.min(self.text.len());
        let block = offset / Self::BLOCK;
        let start = block * Self::BLOCK;
        1 + self.before[block] + newlines(&self.text[start..offset])
    }
}

fn newlines(bytes: &[u8]) -> usize {
    bytes.iter().filter(|&&b| b == b'\n').count()
}

#[cfg(test)]
#[path = "toml_tests.rs"]
mod tests;
