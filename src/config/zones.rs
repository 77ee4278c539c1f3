//! Firewall zones resolved to devices through `/etc/config/network`, as fw4 and netifd
//! name them: the carrier the flowtable hooks and the L3 device the forward hook sees.

use std::collections::{HashMap, HashSet};

use super::openwrt::check_ifname;
use super::uci::{Section, UciFile};
use super::Config;

/// Zones of the firewall file and the interfaces of the network file.
///
/// Zones are found by name through an index, and a zone's devices are gathered into
/// ordered sets, so resolving is linear in the files: with a search per lookup and per
/// device added, 100k zones took 39 s.
pub(super) struct Zones<'a> {
    firewall: &'a UciFile,
    network: Option<&'a UciFile>,
    /// The first zone of each name (as a search in file order found it).
    by_name: HashMap<&'a str, &'a Section>,
}

impl<'a> Zones<'a> {
    pub fn new(firewall: &'a UciFile, network: Option<&'a UciFile>) -> Zones<'a> {
        let mut by_name = HashMap::new();
        for z in firewall.of_type("zone") {
            if let Some((n, _)) = z.single("name") {
                by_name.entry(n).or_insert(z);
            }
        }
        Zones {
            firewall,
            network,
            by_name,
        }
    }

    pub fn names(&self) -> Vec<String> {
        self.firewall
            .of_type("zone")
            .filter_map(|z| z.single("name").map(|(n, _)| n.to_string()))
            .collect()
    }

    pub fn find(&self, name: &str) -> Option<&'a Section> {
        self.by_name.get(name).copied()
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
        let mut seen = HashSet::new();
        for (n, _) in zone.items("network") {
            out.extend(self.interface_devices(&n, &mut seen));
        }
        for (d, _) in zone.items("device") {
            out.extend(Devices::plain(d));
        }
        out.retain_usable();
        out
    }

    /// An interface's devices; `seen` holds the interfaces this resolution has visited,
    /// so aliases (`@wan`) that loop or share interfaces are followed once each (a
    /// depth limit alone let a chain of aliases to many interfaces multiply).
    fn interface_devices(&self, iface: &str, seen: &mut HashSet<String>) -> Devices {
        if !seen.insert(iface.to_string()) {
            return Devices::default();
        }
        let Some(s) = self
            .network
            .and_then(|n| n.named(iface))
            .filter(|s| s.ty == "interface")
        else {
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
            let mut out = Devices::default();
            if let Some(d) =
                l3.or_else(|| tunnel.contains(&proto).then(|| format!("{proto}-{iface}")))
            {
                out.l3_only.insert(d);
            }
            return out;
        }
        let mut out = Devices::default();
        for d in devices {
            match d.strip_prefix('@') {
                // An alias (`option device '@wan'`) shares the other interface's devices,
                // its L3 device included (wan6 over a PPPoE wan runs on pppoe-wan).
                Some(other) => out.extend(self.interface_devices(other, seen)),
                None => out.add(d, l3.iter().cloned()),
            }
        }
        out
    }
}

/// Names in the order they were first added, each once. Small sets (a zone's few
/// devices) are searched; past `INDEX_FROM` names a hash index keeps adding linear.
#[derive(Debug, Default)]
struct NameSet {
    order: Vec<String>,
    index: Option<HashMap<String, usize>>,
}

const INDEX_FROM: usize = 16;

impl NameSet {
    fn position(&self, name: &str) -> Option<usize> {
        match &self.index {
            Some(index) => index.get(name).copied(),
            None => self.order.iter().position(|n| n == name),
        }
    }

    /// Adds `name` unless present; its position either way.
    fn insert(&mut self, name: String) -> usize {
        if let Some(i) = self.position(&name) {
            return i;
        }
        let i = self.order.len();
        match &mut self.index {
            Some(index) => {
                index.insert(name.clone(), i);
            }
            None if i >= INDEX_FROM => {
                let names = self.order.iter().cloned().enumerate();
                let mut index: HashMap<String, usize> = names.map(|(i, n)| (n, i)).collect();
                index.insert(name.clone(), i);
                self.index = Some(index);
            }
            None => {}
        }
        self.order.push(name);
        i
    }

    fn is_empty(&self) -> bool {
        self.order.is_empty()
    }
}

/// Devices of a zone or interface: each carrier with the layer-3 devices stacked on it,
/// and layer-3 devices with no carrier offloadd can hook (a 6in4 tunnel).
#[derive(Debug, Default)]
pub(super) struct Devices {
    /// The carriers; `l3[i]` is what is stacked on carrier i.
    l2: NameSet,
    l3: Vec<NameSet>,
    l3_only: NameSet,
}

impl Devices {
    pub fn plain(d: String) -> Devices {
        let mut out = Devices::default();
        out.add(d, []);
        out
    }

    /// A carrier and layer-3 devices on it (merged with what it already has).
    fn add(&mut self, d: String, l3: impl IntoIterator<Item = String>) {
        let i = self.l2.insert(d);
        if i == self.l3.len() {
            self.l3.push(NameSet::default());
        }
        for n in l3 {
            self.l3[i].insert(n);
        }
    }

    pub fn extend(&mut self, other: Devices) {
        for (d, l3) in other.l2.order.into_iter().zip(other.l3) {
            self.add(d, l3.order);
        }
        for d in other.l3_only.order {
            self.l3_only.insert(d);
        }
    }

    /// Drops wildcards and names the kernel would refuse.
    fn retain_usable(&mut self) {
        let mut kept = Devices::default();
        for (d, l3) in std::mem::take(&mut self.l2)
            .order
            .into_iter()
            .zip(self.l3.drain(..))
        {
            if usable(&d) {
                kept.add(d, l3.order.into_iter().filter(|n| usable(n)));
            }
        }
        for d in std::mem::take(&mut self.l3_only).order {
            if usable(&d) {
                kept.l3_only.insert(d);
            }
        }
        *self = kept;
    }

    /// The names the forward hook sees for this traffic: the L3 device of each carrier
    /// (the carrier itself when nothing is stacked on it) and carrier-less L3 devices.
    pub fn l3_names(&self) -> Vec<String> {
        let mut out = NameSet::default();
        for (d, l3) in self.l2.order.iter().zip(&self.l3) {
            if l3.is_empty() {
                out.insert(d.clone());
            } else {
                for n in &l3.order {
                    out.insert(n.clone());
                }
            }
        }
        for n in &self.l3_only.order {
            out.insert(n.clone());
        }
        out.order
    }

    /// Into the config: the carriers as flowtable devices, the stacked names beside them.
    pub fn add_to(&self, cfg: &mut Config) {
        let mut devices = NameSet::default();
        for d in cfg.offload.devices.drain(..) {
            devices.insert(d);
        }
        for (d, l3) in self.l2.order.iter().zip(&self.l3) {
            devices.insert(d.clone());
            if !l3.is_empty() {
                let names = cfg.offload.l3_devices.entry(d.clone()).or_default();
                let mut set = NameSet::default();
                for n in names.drain(..).chain(l3.order.iter().cloned()) {
                    set.insert(n);
                }
                *names = set.order;
            }
        }
        cfg.offload.devices = devices.order;
    }
}

fn usable(d: &str) -> bool {
    !d.contains('+') && check_ifname(d).is_ok()
}
