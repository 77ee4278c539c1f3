//! The TOML source (`/etc/offloadd/offloadd.toml`, any distribution).
//!
//! Deserialises into raw structs that keep each value's span, then validates into
//! `Config`, so both syntax and meaning errors carry the line they were found on.

use std::collections::BTreeSet;
use std::ops::Range;

use serde::Deserialize;
use toml::Spanned;

use super::check_priority;
use super::values::parse_duration;
use super::{
    Config, Exclude, FlushOn, Hardware, Mode, ParseError, MAX_EVENT_BUFFER, MIN_EVENT_BUFFER,
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
    let raw: RawConfig = toml::from_str(text).map_err(|e| {
        let line = e.span().map_or(0, |s| line_of(text, s.start));
        ParseError::new(line, e.message().trim_end().replace('\n', "; "))
    })?;
    let at = |span: Range<usize>| line_of(text, span.start);
    let mut cfg = Config::default();

    if let Some(m) = raw.mode {
        cfg.mode = match m.get_ref().as_str() {
            "auto" => Mode::Auto,
            "manage" => Mode::Manage,
            "observe" => Mode::Observe,
            other => {
                return Err(ParseError::new(
                    at(m.span()),
                    format!("mode {other:?} is not valid: use \"auto\", \"manage\" or \"observe\""),
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
                    format!("device {name:?} is listed twice"),
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
                        format!("l3_devices names {dev:?}, which is not in devices: list the device it runs over in devices"),
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
                            "hardware {other:?} is not valid: use \"off\", \"auto\" or \"require\""
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
                .push(exclude(text, line, e.into_inner())?);
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
        cfg.timeouts.tcp = timeout(text, t.tcp)?;
        cfg.timeouts.udp = timeout(text, t.udp)?;
    }
    if let Some(m) = raw.metrics {
        cfg.metrics = m.validate(at)?;
    }
    Ok(cfg)
}

fn exclude(text: &str, line: usize, raw: RawExclude) -> Result<Exclude, ParseError> {
    fn list<T: std::str::FromStr<Err = String>>(
        text: &str,
        items: Option<Vec<Spanned<String>>>,
    ) -> Result<Vec<T>, ParseError> {
        items
            .unwrap_or_default()
            .into_iter()
            .map(|s| {
                s.get_ref()
                    .parse()
                    .map_err(|m| ParseError::new(line_of(text, s.span().start), m))
            })
            .collect()
    }
    let l4proto = match raw.l4proto {
        Some(p) => Some(
            p.get_ref()
                .parse()
                .map_err(|m| ParseError::new(line_of(text, p.span().start), m))?,
        ),
        None => None,
    };
    let mark = match raw.mark {
        Some(m) => Some(
            m.get_ref()
                .parse()
                .map_err(|e| ParseError::new(line_of(text, m.span().start), e))?,
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
                        line_of(text, d.span().start),
                        format!(
                            "\"{n}\" is not a valid interface name (1 to {IFNAME_MAX} characters)"
                        ),
                    ))
                } else {
                    Ok(n.clone())
                }
            })
            .collect()
    };
    let e = Exclude {
        line,
        l4proto,
        sport: list(text, raw.sport)?,
        dport: list(text, raw.dport)?,
        saddr: list(text, raw.saddr)?,
        daddr: list(text, raw.daddr)?,
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

fn timeout(
    text: &str,
    v: Option<Spanned<String>>,
) -> Result<Option<std::time::Duration>, ParseError> {
    let Some(v) = v else { return Ok(None) };
    let line = line_of(text, v.span().start);
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
            "device {name:?} is not a valid interface name (1-15 characters, no '/', ':' or spaces; see `ip link`)"
        ))
    }
}

/// 1-based line of a byte offset.
fn line_of(text: &str, offset: usize) -> usize {
    1 + text.as_bytes()[..offset.min(text.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
}

#[cfg(test)]
#[path = "toml_tests.rs"]
mod tests;
