//! Firewall zones resolved to devices through `/etc/config/network`, as fw4 and netifd
//! name them: the carrier the flowtable hooks and the L3 device the forward hook sees.

use super::openwrt::{check_ifname, push_all};
use super::uci::{Section, UciFile};
use super::Config;

/// Zones of the firewall file and the interfaces of the network file.
pub(super) struct Zones<'a> {
    pub firewall: &'a UciFile,
    pub network: Option<&'a UciFile>,
}

impl<'a> Zones<'a> {
    pub fn names(&self) -> Vec<String> {
        self.firewall
            .of_type("zone")
            .filter_map(|z| z.single("name").map(|(n, _)| n.to_string()))
            .collect()
    }

    pub fn find(&self, name: &str) -> Option<&'a Section> {
        self.firewall
            .of_type("zone")
            .find(|z| z.single("name").is_some_and(|(n, _)| n == name))
    }

    pub fn all_devices(&self) -> Devices {
        let mut out = Devices::default();
        for z in self.firewall.of_type("zone") {
            out.extend(self.devices_of(z));
        }
        out
    }

    /// A zone's devices: its `device` entries and the devices of each `network`.
    /// Wildcards (`tun+`) cannot be flowtable devices and are skipped.
    pub fn devices_of(&self, zone: &Section) -> Devices {
        let mut out = Devices::default();
        for (n, _) in zone.items("network") {
            out.extend(self.interface_devices(&n, 0));
        }
        for (d, _) in zone.items("device") {
            out.extend(Devices::plain(d));
        }
        out.l2.retain(|(d, _)| usable(d));
        for (_, l3) in &mut out.l2 {
            l3.retain(|d| usable(d));
        }
        out.l3_only.retain(|d| usable(d));
        out
    }

    fn interface_devices(&self, iface: &str, depth: usize) -> Devices {
        let Some(s) = self.network.and_then(|n| {
            n.of_type("interface")
                .find(|s| s.name.as_deref() == Some(iface))
        }) else {
            return Devices::default();
        };
        // OpenWrt 19.07 and older: `option type 'bridge'` on the interface makes br-NAME.
        if s.single("type").is_some_and(|(t, _)| t == "bridge") {
            return Devices::plain(format!("br-{iface}"));
        }
        let proto = s.single("proto").map(|(p, _)| p).unwrap_or("none");
        // The layer-3 device netifd creates on top of the configured one: the forward
        // hook sees `pppoe-wan`, the flowtable hooks the carrier `wan` it runs over.
        let l3 = match proto {
            "pppoe" | "pppoa" | "pptp" | "l2tp" | "3g" | "ppp" => Some(format!("{proto}-{iface}")),
            _ => None,
        };
        let mut devices: Vec<String> = s.items("device").into_iter().map(|(d, _)| d).collect();
        if devices.is_empty() {
            devices = s.items("ifname").into_iter().map(|(d, _)| d).collect();
        }
        if devices.is_empty() {
            // L3 interfaces without a device option are named after the section
            // (WireGuard); tunnels (6in4, gre) have an L3 device and no carrier we hook.
            if proto == "wireguard" {
                return Devices::plain(iface.to_string());
            }
            let tunnel = ["6in4", "6to4", "6rd", "gre", "gretap", "vti", "xfrm"];
            return Devices {
                l2: Vec::new(),
                l3_only: l3
                    .or_else(|| tunnel.contains(&proto).then(|| format!("{proto}-{iface}")))
                    .into_iter()
                    .collect(),
            };
        }
        let mut out = Devices::default();
        for d in devices {
            match d.strip_prefix('@') {
                // An alias (`option device '@wan'`) shares the other interface's devices,
                // its L3 device included (wan6 over a PPPoE wan runs on pppoe-wan).
                Some(other) if depth < 4 => out.extend(self.interface_devices(other, depth + 1)),
                Some(_) => {}
                None => out.extend(Devices {
                    l2: vec![(d, l3.iter().cloned().collect())],
                    l3_only: Vec::new(),
                }),
            }
        }
        out
    }
}

/// Devices of a zone or interface: each carrier with the layer-3 devices stacked on it,
/// and layer-3 devices with no carrier offloadd can hook (a 6in4 tunnel).
#[derive(Debug, Default)]
pub(super) struct Devices {
    l2: Vec<(String, Vec<String>)>,
    l3_only: Vec<String>,
}

impl Devices {
    pub fn plain(d: String) -> Devices {
        Devices {
            l2: vec![(d, Vec::new())],
            l3_only: Vec::new(),
        }
    }

    pub fn extend(&mut self, other: Devices) {
        for (d, l3) in other.l2 {
            match self.l2.iter_mut().find(|(x, _)| *x == d) {
                Some((_, mine)) => push_all(mine, l3),
                None => self.l2.push((d, l3)),
            }
        }
        push_all(&mut self.l3_only, other.l3_only);
    }

    /// The names the forward hook sees for this traffic: the L3 device of each carrier
    /// (the carrier itself when nothing is stacked on it) and carrier-less L3 devices.
    pub fn l3_names(&self) -> Vec<String> {
        let mut out = Vec::new();
        for (d, l3) in &self.l2 {
            if l3.is_empty() {
                push_all(&mut out, [d.clone()]);
            } else {
                push_all(&mut out, l3.iter().cloned());
            }
        }
        push_all(&mut out, self.l3_only.iter().cloned());
        out
    }

    /// Into the config: the carriers as flowtable devices, the stacked names beside them.
    pub fn add_to(&self, cfg: &mut Config) {
        for (d, l3) in &self.l2 {
            push_all(&mut cfg.offload.devices, [d.clone()]);
            if !l3.is_empty() {
                push_all(
                    cfg.offload.l3_devices.entry(d.clone()).or_default(),
                    l3.iter().cloned(),
                );
            }
        }
    }
}

fn usable(d: &str) -> bool {
    !d.contains('+') && check_ifname(d).is_ok()
}
