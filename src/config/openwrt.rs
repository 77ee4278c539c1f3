//! The OpenWrt source: `/etc/config/offloadd`, with firewall zones resolved to devices
//! through `/etc/config/firewall` and `/etc/config/network`, as fw4 does.
//!
//! Software offload uses each interface's L2 device: `br-lan` for a bridged lan, `eth1`
//! for a DHCP or PPPoE wan (the PPPoE carrier, not `pppoe-wan`, which exists only while
//! the session is up), the interface name for WireGuard. Hardware planning later resolves
//! bridges and VLANs to their lower devices from sysfs (see `link::lower_devices`).

use std::path::{Path, PathBuf};

use super::uci::{parse_uci, Section, UciFile};
use super::values::{IpPrefix, L4Proto, PortRange};
use super::{text_or_error, Config, ConfigError, Exclude, FlushOn, Hardware, Mode, ParseError};

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
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if !required && e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(error) => return Err(ConfigError::Read { path, error }),
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
    let zones = Zones { firewall, network };
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
        cfg.offload.devices = zones.all_devices();
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
            "flush_on_change",
            "flush_on_firewall_change",
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
                    format!("mode '{v}' is not valid (use auto, manage or observe)"),
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
                    format!("hardware '{v}' is not valid (use off, auto or require)"),
                ))
            }
        };
    }
    for key in ["flush_on_change", "flush_on_firewall_change"] {
        if let Some((v, l)) = main.single(key) {
            cfg.offload.flush_on_change = FlushOn::parse(v).map_err(|m| off(l, m))?;
        }
    }
    if let Some((v, l)) = main.single("counter") {
        cfg.offload.counter = parse_bool(v).map_err(|m| off(l, m))?;
    }
    let zone_names = main.items("zone");
    let extra = main.items("device");
    let mut devices = Vec::new();
    if zone_names.is_empty() && extra.is_empty() {
        devices = zones.all_devices();
    }
    for (z, line) in &zone_names {
        let zone = zones.find(z).ok_or_else(|| {
            off(
                *line,
                format!(
                    "zone '{z}' is not in /etc/config/firewall (zones there: {})",
                    zones.names().join(", ")
                ),
            )
        })?;
        push_all(&mut devices, zones.devices_of(zone));
    }
    for (d, line) in extra {
        check_ifname(&d).map_err(|m| off(line, m))?;
        push_all(&mut devices, [d]);
    }
    cfg.offload.devices = devices;
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
                let mut v = Vec::new();
                for (d, l) in s.items(&o.key) {
                    check_ifname(&d).map_err(|m| (l, m))?;
                    v.push(d);
                }
                if o.key == "iif" || o.key == "src_device" {
                    e.iif.extend(v);
                } else {
                    e.oif.extend(v);
                }
            }
            "src_zone" | "dest_zone" => {
                for (z, l) in s.items(&o.key) {
                    let zone = zones.find(&z).ok_or((
                        l,
                        format!("zone '{z}' is not in /etc/config/firewall (zones there: {})", zones.names().join(", ")),
                    ))?;
                    let devs = zones.devices_of(zone);
                    if o.key == "src_zone" {
                        e.iif.extend(devs);
                    } else {
                        e.oif.extend(devs);
                    }
                }
            }
            "name" => {}
            other => return Err((o.line, format!("unknown option '{other}' in config exclude (known: name, l4proto, sport, dport, saddr, daddr, mark, iif, oif, src_zone, dest_zone)"))),
        }
    }
    Ok(e)
}

fn parse_items<T: std::str::FromStr<Err = String>>(
    s: &Section,
    key: &str,
) -> Result<Vec<T>, (usize, String)> {
    s.items(key)
        .iter()
        .map(|(v, l)| v.parse::<T>().map_err(|m| (*l, format!("{key}: {m}"))))
        .collect()
}

/// Zones of the firewall file and the interfaces of the network file.
struct Zones<'a> {
    firewall: &'a UciFile,
    network: Option<&'a UciFile>,
}

impl<'a> Zones<'a> {
    fn names(&self) -> Vec<String> {
        self.firewall
            .of_type("zone")
            .filter_map(|z| z.single("name").map(|(n, _)| n.to_string()))
            .collect()
    }

    fn find(&self, name: &str) -> Option<&'a Section> {
        self.firewall
            .of_type("zone")
            .find(|z| z.single("name").is_some_and(|(n, _)| n == name))
    }

    fn all_devices(&self) -> Vec<String> {
        let mut out = Vec::new();
        for z in self.firewall.of_type("zone") {
            push_all(&mut out, self.devices_of(z));
        }
        out
    }

    /// A zone's devices: its `device` entries and the L2 device of each `network`.
    /// Wildcards (`tun+`) cannot be flowtable devices and are skipped.
    fn devices_of(&self, zone: &Section) -> Vec<String> {
        let mut out = Vec::new();
        for (n, _) in zone.items("network") {
            push_all(&mut out, self.interface_devices(&n, 0));
        }
        for (d, _) in zone.items("device") {
            push_all(&mut out, [d]);
        }
        out.retain(|d| !d.contains('+') && check_ifname(d).is_ok());
        out
    }

    fn interface_devices(&self, iface: &str, depth: usize) -> Vec<String> {
        let Some(s) = self.network.and_then(|n| {
            n.of_type("interface")
                .find(|s| s.name.as_deref() == Some(iface))
        }) else {
            return Vec::new();
        };
        // OpenWrt 19.07 and older: `option type 'bridge'` on the interface makes br-NAME.
        if s.single("type").is_some_and(|(t, _)| t == "bridge") {
            return vec![format!("br-{iface}")];
        }
        let mut devices: Vec<String> = s.items("device").into_iter().map(|(d, _)| d).collect();
        if devices.is_empty() {
            devices = s.items("ifname").into_iter().map(|(d, _)| d).collect();
        }
        if devices.is_empty() {
            // L3 interfaces without a device option are named after the section
            // (WireGuard); others (a 6in4 tunnel) have none we can name.
            if s.single("proto").is_some_and(|(p, _)| p == "wireguard") {
                return vec![iface.to_string()];
            }
            return Vec::new();
        }
        let mut out = Vec::new();
        for d in devices {
            match d.strip_prefix('@') {
                // An alias (`option device '@wan'`) shares the other interface's device.
                Some(other) if depth < 4 => {
                    push_all(&mut out, self.interface_devices(other, depth + 1))
                }
                Some(_) => {}
                None => push_all(&mut out, [d]),
            }
        }
        out
    }
}

fn push_all(out: &mut Vec<String>, items: impl IntoIterator<Item = String>) {
    for i in items {
        if !out.contains(&i) {
            out.push(i);
        }
    }
}

fn parse_bool(v: &str) -> Result<bool, String> {
    match v {
        "1" | "yes" | "on" | "true" | "enabled" => Ok(true),
        "0" | "no" | "off" | "false" | "disabled" => Ok(false),
        _ => Err(format!("'{v}' is not a boolean (use 1 or 0)")),
    }
}

fn check_ifname(d: &str) -> Result<(), String> {
    if d.is_empty() || d.len() > 15 || d.contains(['/', ' ']) || d == "." || d == ".." {
        return Err(format!(
            "'{d}' is not a valid interface name (1 to 15 characters, no '/' or spaces)"
        ));
    }
    Ok(())
}

#[cfg(test)]
#[path = "openwrt_tests.rs"]
mod tests;
