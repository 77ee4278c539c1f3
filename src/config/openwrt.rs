//! The OpenWrt source: `/etc/config/offloadd`, with firewall zones resolved to devices
//! through `/etc/config/firewall` and `/etc/config/network`, as fw4 does.
//!
//! The flowtable hooks each interface's L2 device: `br-lan` for a bridged lan, `eth1`
//! for a DHCP or PPPoE wan (the PPPoE carrier, not `pppoe-wan`, which exists only while
//! the session is up), the interface name for WireGuard. Hardware planning later resolves
//! bridges and VLANs to their lower devices from sysfs (see `link::lower_devices`).
//! Matches in the forward chain (exclusions by zone, the `flow add` rule) use the L3
//! devices netifd stacks on them (`pppoe-wan`): that is what the forward hook sees.

use std::path::{Path, PathBuf};

use super::uci::{parse_uci, Section, UciFile};
use super::values::{IpPrefix, L4Proto, PortRange};
use super::zones::{Devices, Zones};
use super::{
    list_too_long, shown_uci, some_of, text_or_error, Config, ConfigError, Exclude, FlushOn,
    Hardware, Mode, ParseError, MAX_EXCLUDE_LIST,
};

/// Where OpenWrt keeps UCI files.
pub const UCI_DIR: &str = "/etc/config";

/// Which of the three files an error is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UciFileName {
    Offloadd,
    Firewall,
    Network,
}

impl UciFileName {
    pub fn file(self) -> &'static str {
        match self {
            UciFileName::Offloadd => "offloadd",
            UciFileName::Firewall => "firewall",
            UciFileName::Network => "network",
        }
    }
}

type UciResult<T> = Result<T, (UciFileName, ParseError)>;

/// Reads the UCI files under `dir` into a `Config`.
pub fn load_uci(dir: &Path) -> Result<Config, ConfigError> {
    let read = |which: UciFileName, required: bool| -> Result<Option<UciFile>, ConfigError> {
        let path = dir.join(which.file());
        let bytes = match super::read_capped(&path, super::MAX_UCI_BYTES) {
            Ok(b) => b,
            Err(ConfigError::Read { error, .. })
                if !required && error.kind() == std::io::ErrorKind::NotFound =>
            {
                return Ok(None)
            }
            Err(e) => return Err(e),
        };
        let invalid = |e: ParseError| ConfigError::Invalid {
            path: path.clone(),
            line: e.line,
            message: e.message,
        };
        let text = text_or_error(&bytes).map_err(invalid)?;
        parse_uci(text).map(Some).map_err(invalid)
    };
    let offloadd = read(UciFileName::Offloadd, false)?;
    let firewall = read(UciFileName::Firewall, true)?.expect("required");
    let network = read(UciFileName::Network, false)?;
    from_uci(offloadd.as_ref(), &firewall, network.as_ref()).map_err(|(which, e)| {
        ConfigError::Invalid {
            path: uci_path(dir, which),
            line: e.line,
            message: e.message,
        }
    })
}

pub fn uci_path(dir: &Path, which: UciFileName) -> PathBuf {
    dir.join(which.file())
}

/// Builds the config from parsed files (pure; the fixtures test this).
pub fn from_uci(
    offloadd: Option<&UciFile>,
    firewall: &UciFile,
    network: Option<&UciFile>,
) -> UciResult<Config> {
    let mut cfg = Config::default();
    let zones = Zones::new(firewall, network);
    let Some(main) = offloadd.and_then(|f| f.of_type("offload").next()) else {
        // No offloadd config: follow the firewall's own offloading settings.
        let defaults = firewall.of_type("defaults").next();
        let flag = |key| defaults.and_then(|d| d.single(key));
        let on = |key| -> UciResult<bool> {
            match flag(key) {
                None => Ok(false),
                Some((v, l)) => {
                    parse_bool(v).map_err(|m| (UciFileName::Firewall, ParseError::new(l, m)))
                }
            }
        };
        cfg.mode = if on("flow_offloading")? {
            Mode::Auto
        } else {
            Mode::Observe
        };
        cfg.offload.hardware = if on("flow_offloading_hw")? {
            Hardware::Auto
        } else {
            Hardware::Off
        };
        zones.all_devices().add_to(&mut cfg);
        return Ok(cfg);
    };
    let off = |line: usize, m: String| (UciFileName::Offloadd, ParseError::new(line, m));
    for o in &main.options {
        let known = [
            "enabled",
            "mode",
            "hardware",
            "zone",
            "device",
            "counter",
            "priority",
            "flush_on_change",
            "flush_on_firewall_change",
            "metrics_textfile",
            "metrics_listen",
            "metrics_interval",
            "accounting",
        ];
        if !known.contains(&o.key.as_str()) {
            return Err(off(
                o.line,
                format!(
                    "unknown option '{}' in config offload (known: {})",
                    o.key,
                    known.join(", ")
                ),
            ));
        }
    }
    let enabled = match main.single("enabled") {
        Some((v, l)) => parse_bool(v).map_err(|m| off(l, m))?,
        None => true,
    };
    if let Some((v, l)) = main.single("mode") {
        cfg.mode = match v {
            "auto" => Mode::Auto,
            "manage" => Mode::Manage,
            "observe" => Mode::Observe,
            _ => {
                return Err(off(
                    l,
                    format!(
                        "mode {} is not valid (use auto, manage or observe)",
                        shown_uci(v)
                    ),
                ))
            }
        };
    }
    if !enabled {
        cfg.mode = Mode::Observe;
    }
    if let Some((v, l)) = main.single("hardware") {
        cfg.offload.hardware = match v {
            "off" | "0" => Hardware::Off,
            "auto" | "1" => Hardware::Auto,
            "require" => Hardware::Require,
            _ => {
                return Err(off(
                    l,
                    format!(
                        "hardware {} is not valid (use off, auto or require)",
                        shown_uci(v)
                    ),
                ))
            }
        };
    }
    for key in ["flush_on_change", "flush_on_firewall_change"] {
        if let Some((v, l)) = main.single(key) {
            cfg.offload.flush_on_change = FlushOn::parse(v).map_err(|m| off(l, m))?;
        }
    }
    if let Some((v, l)) = main.single("priority") {
        let n: i64 = v
            .parse()
            .map_err(|_| off(l, format!("priority {} is not a number", shown_uci(v))))?;
        cfg.offload.priority = Some(super::check_priority(n).map_err(|m| off(l, m))?);
    }
    if let Some((v, l)) = main.single("counter") {
        cfg.offload.counter = parse_bool(v).map_err(|m| off(l, m))?;
    }
    if let Some((v, l)) = main.single("accounting") {
        cfg.conntrack.accounting = parse_bool(v).map_err(|m| off(l, m))?;
    }
    if let Some((v, l)) = main.single("metrics_textfile") {
        cfg.metrics.textfile = Some(super::metrics::check_textfile(v).map_err(|m| off(l, m))?);
    }
    if let Some((v, l)) = main.single("metrics_listen") {
        cfg.metrics.listen = Some(super::metrics::check_listen(v).map_err(|m| off(l, m))?);
    }
    if let Some((v, l)) = main.single("metrics_interval") {
        cfg.metrics.interval = super::metrics::check_interval(v).map_err(|m| off(l, m))?;
    }
    let zone_names = main.items("zone");
    let extra = main.items("device");
    let mut devices = Devices::default();
    if zone_names.is_empty() && extra.is_empty() {
        devices = zones.all_devices();
    }
    for (z, line) in &zone_names {
        let zone = zones.find(z).ok_or_else(|| {
            off(
                *line,
                format!(
                    "zone {} is not in /etc/config/firewall (zones there: {})",
                    shown_uci(z),
                    some_of(&zones.names(), "zones")
                ),
            )
        })?;
        devices.extend(zones.devices_of(zone));
    }
    for (d, line) in extra {
        check_ifname(&d).map_err(|m| off(line, m))?;
        devices.extend(Devices::plain(d));
    }
    devices.add_to(&mut cfg);
    if let Some(f) = offloadd {
        for s in f.of_type("exclude") {
            cfg.offload
                .exclude
                .push(exclude(s, &zones).map_err(|(l, m)| off(l, m))?);
        }
        if let Some(s) = f
            .sections
            .iter()
            .find(|s| s.ty != "offload" && s.ty != "exclude")
        {
            return Err(off(
                s.line,
                format!(
                    "unknown section type '{}' (expected offload or exclude)",
                    s.ty
                ),
            ));
        }
    }
    Ok(cfg)
}

fn exclude(s: &Section, zones: &Zones) -> Result<Exclude, (usize, String)> {
    let mut e = Exclude {
        line: s.line,
        ..Exclude::default()
    };
    for o in &s.options {
        match o.key.as_str() {
            "l4proto" | "proto" => {
                let (v, l) = s.single(&o.key).ok_or((o.line, "l4proto takes one value".to_string()))?;
                e.l4proto = Some(v.parse::<L4Proto>().map_err(|m| (l, m))?);
            }
            "sport" | "dport" | "src_port" | "dest_port" => {
                let v = parse_items::<PortRange>(s, &o.key)?;
                if o.key.starts_with('s') {
                    e.sport = v;
                } else {
                    e.dport = v;
                }
            }
            "saddr" | "daddr" | "src_ip" | "dest_ip" => {
                let v = parse_items::<IpPrefix>(s, &o.key)?;
                if o.key.starts_with('s') {
                    e.saddr = v;
                } else {
                    e.daddr = v;
                }
            }
            "mark" => {
                let (v, l) = s
                    .single("mark")
                    .ok_or((o.line, "mark takes one value".to_string()))?;
                e.mark = Some(v.parse().map_err(|m| (l, m))?);
            }
            "iif" | "src_device" | "oif" | "dest_device" => {
                let into = if o.key == "iif" || o.key == "src_device" {
                    &mut e.iif
                } else {
                    &mut e.oif
                };
                for (d, l) in capped(s, &o.key)? {
                    check_ifname(&d).map_err(|m| (l, m))?;
                    push_capped(into, [d], l, &o.key)?;
                }
            }
            "src_zone" | "dest_zone" => {
                let into = if o.key == "src_zone" {
                    &mut e.iif
                } else {
                    &mut e.oif
                };
                for (z, l) in capped(s, &o.key)? {
                    let zone = zones.find(&z).ok_or((
                        l,
                        format!("zone {} is not in /etc/config/firewall (zones there: {})", shown_uci(&z), some_of(&zones.names(), "zones")),
                    ))?;
                    // Matched in the forward hook, which sees L3 devices (pppoe-wan).
                    let devs = zones.devices_of(zone).l3_names();
                    if devs.is_empty() {
                        return Err((l, format!("zone {} has no devices offloadd can name (no network with a device in /etc/config/network, no device option): this exclude would match nothing; name devices with src_device/dest_device instead", shown_uci(&z))));
                    }
                    push_capped(into, devs, l, &o.key)?;
                }
            }
            "name" => {}
            other => return Err((o.line, format!("unknown option '{other}' in config exclude (known: name, l4proto, sport, dport, saddr, daddr, mark, iif, oif, src_zone, dest_zone)"))),
        }
    }
    if e.matches_everything() {
        return Err((s.line, "this exclude matches every connection (it has no match options) and would turn offload off for all of them: give at least one of l4proto, sport, dport, saddr, daddr, mark, src_zone, dest_zone, src_device, dest_device".to_string()));
    }
    Ok(e)
}

/// The items of `key`, refused past `MAX_EXCLUDE_LIST` (on the line of the first item
/// over) before any is parsed or resolved.
fn capped(s: &Section, key: &str) -> Result<Vec<(String, usize)>, (usize, String)> {
    let items = s.items(key);
    match items.get(MAX_EXCLUDE_LIST) {
        Some((_, l)) => Err((*l, list_too_long(key))),
        None => Ok(items),
    }
}

/// Appends devices to an exclusion's `iif` or `oif`, which zones and devices fill
/// together: refused on line `l` when it would pass `MAX_EXCLUDE_LIST`.
fn push_capped(
    into: &mut Vec<String>,
    devices: impl IntoIterator<Item = String>,
    l: usize,
    key: &str,
) -> Result<(), (usize, String)> {
    for d in devices {
        if into.len() == MAX_EXCLUDE_LIST {
            return Err((l, format!("{key}: more than {MAX_EXCLUDE_LIST} devices in this exclusion (its zones' devices and its devices together): an exclusion's lists multiply into rules; exclude fewer devices")));
        }
        into.push(d);
    }
    Ok(())
}

fn parse_items<T: std::str::FromStr<Err = String>>(
    s: &Section,
    key: &str,
) -> Result<Vec<T>, (usize, String)> {
    capped(s, key)?
        .iter()
        .map(|(v, l)| v.parse::<T>().map_err(|m| (*l, format!("{key}: {m}"))))
        .collect()
}

fn parse_bool(v: &str) -> Result<bool, String> {
    match v {
        "1" | "yes" | "on" | "true" | "enabled" => Ok(true),
        "0" | "no" | "off" | "false" | "disabled" => Ok(false),
        _ => Err(format!("{} is not a boolean (use 1 or 0)", shown_uci(v))),
    }
}

pub(super) fn check_ifname(d: &str) -> Result<(), String> {
    if d.is_empty() || d.len() > 15 || d.contains(['/', ' ']) || d == "." || d == ".." {
        return Err(format!(
            "{} is not a valid interface name (1 to 15 characters, no '/' or spaces)",
            shown_uci(d)
        ));
    }
    Ok(())
}

#[cfg(test)]
#[path = "openwrt_tests.rs"]
mod tests;
