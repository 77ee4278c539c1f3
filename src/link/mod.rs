//! Which network devices exist, as a value the planner can use, and the actor that keeps
//! it current from rtnetlink link events (`watcher`).
//!
//! `LinkSnapshot::current` reads the list with `if_nameindex(3)`, which needs no
//! privileges, so `offloadd plan` works as any user. The daemon keeps its snapshot from
//! RTM_NEWLINK / RTM_DELLINK instead, so it sees every appearance, disappearance, rename
//! and index change.

mod addrs;
mod ethtool;
#[cfg(test)]
pub(crate) mod fake_sysfs;
mod lower;
mod mlx5;
mod route;
mod shaping;
mod watcher;

use std::collections::BTreeMap;
use std::ffi::CStr;
use std::io;

pub use addrs::local_addresses;
pub use ethtool::{feature, hw_tc_offload_hint, Feature};
pub use lower::{lower_devices, SYSFS_NET};
pub use mlx5::{mlx5_missing, mlx5_port, Mlx5Port};
pub use route::Routes;
pub use shaping::{shaped, shaped_now};
#[doc(hidden)] // the rtnetlink fuzz target's way in (fuzz/fuzz_targets/bodies.rs)
pub use watcher::decode as decode_link_message;
pub use watcher::spawn_link_watcher;

/// The ifindex of device `name` in this network namespace now, if it exists
/// (if_nametoindex(3): an ioctl, no privileges).
pub fn ifindex(name: &str) -> Option<u32> {
    let c = std::ffi::CString::new(name).ok()?;
    // SAFETY: a NUL-terminated string that outlives the call.
    let i = unsafe { libc::if_nametoindex(c.as_ptr()) };
    (i != 0).then_some(i)
}

/// One present device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Link {
    pub index: u32,
    /// IFLA_MASTER: the bridge (or bond) this device is a port of.
    pub master: Option<u32>,
}

/// A change reported by the kernel (decoded from a link message).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkEvent {
    /// RTM_NEWLINK: a device appeared or changed (name, master, flags).
    New {
        index: u32,
        name: String,
        master: Option<u32>,
    },
    /// RTM_DELLINK: the device with this index is gone.
    Del { index: u32 },
}

/// Present devices by name; for hardware planning, the lower devices of some of them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LinkSnapshot {
    links: BTreeMap<String, Link>,
    /// name -> the devices hardware offload names for it (bridge ports, VLAN parents,
    /// itself), filled by the caller from sysfs for the devices it plans with.
    lowers: BTreeMap<String, Vec<String>>,
}

impl LinkSnapshot {
    /// Builds a snapshot from names (tests, fixtures).
    pub fn from_names<I, S>(names: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        LinkSnapshot {
            links: names
                .into_iter()
                .enumerate()
                .map(|(i, n)| {
                    let link = Link {
                        index: i as u32 + 1,
                        master: None,
                    };
                    (n.into(), link)
                })
                .collect(),
            lowers: BTreeMap::new(),
        }
    }

    /// Reads the devices of the current network namespace.
    pub fn current() -> io::Result<Self> {
        let mut snap = LinkSnapshot::default();
        // SAFETY: if_nameindex returns a heap array terminated by an entry with index 0
        // and a null name; we read it before handing it back to if_freenameindex.
        unsafe {
            let head = libc::if_nameindex();
            if head.is_null() {
                return Err(io::Error::last_os_error());
            }
            let mut p = head;
            while (*p).if_index != 0 && !(*p).if_name.is_null() {
                let name = CStr::from_ptr((*p).if_name).to_string_lossy().into_owned();
                let link = Link {
                    index: (*p).if_index,
                    master: None,
                };
                snap.links.insert(name, link);
                p = p.add(1);
            }
            libc::if_freenameindex(head);
        }
        Ok(snap)
    }

    pub fn contains(&self, name: &str) -> bool {
        self.links.contains_key(name)
    }

    pub fn get(&self, name: &str) -> Option<Link> {
        self.links.get(name).copied()
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.links.keys().map(String::as_str)
    }

    /// The devices there are, but loopback, in name order: what to tell a user whose
    /// configured devices are all missing.
    pub fn names_but_lo(&self) -> Vec<String> {
        self.names()
            .filter(|n| *n != "lo")
            .map(String::from)
            .collect()
    }

    pub fn len(&self) -> usize {
        self.links.len()
    }

    pub fn is_empty(&self) -> bool {
        self.links.is_empty()
    }

    /// Applies one kernel event; returns whether anything the planner sees changed.
    /// A NEWLINK that carries a known index under a new name is a rename: the old name
    /// goes. A DELLINK removes by index, so a stale deletion that arrives after a device
    /// of the same name was recreated (new index) removes nothing.
    pub fn update(&mut self, event: &LinkEvent) -> bool {
        match event {
            LinkEvent::New {
                index,
                name,
                master,
            } => {
                let link = Link {
                    index: *index,
                    master: *master,
                };
                if self.links.get(name) == Some(&link) {
                    return false;
                }
                self.links.retain(|n, l| l.index != *index || n == name);
                self.links.insert(name.clone(), link);
                true
            }
            LinkEvent::Del { index } => {
                let before = self.links.len();
                self.links.retain(|_, l| l.index != *index);
                before != self.links.len()
            }
        }
    }

    /// Records the hardware devices of `name` (see `lower_devices`).
    pub fn set_lowers(&mut self, name: &str, lowers: Vec<String>) {
        self.lowers.insert(name.to_string(), lowers);
    }

    /// Reads from sysfs (`sysfs_net`, normally `SYSFS_NET`) the hardware devices of each
    /// of `devices` that is present, asking ethtool which have `hw-tc-offload`.
    pub fn resolve_lowers(&mut self, devices: &[String], sysfs_net: &std::path::Path) {
        let hw_tc = |d: &str| feature(d, "hw-tc-offload").is_some_and(|f| f.active);
        for d in devices {
            if self.contains(d) {
                let lowers = lower_devices(sysfs_net, d, &hw_tc);
                self.set_lowers(d, lowers);
            }
        }
    }

    /// The devices hardware offload must name for `name`: the present ones of what
    /// `set_lowers` recorded (none for a bridge without ports), or the device itself
    /// when nothing was recorded.
    pub fn hardware_devices(&self, name: &str) -> Vec<String> {
        match self.lowers.get(name) {
            Some(l) => l.iter().filter(|d| self.contains(d)).cloned().collect(),
            None => vec![name.to_string()],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn new(index: u32, name: &str) -> LinkEvent {
        LinkEvent::New {
            index,
            name: name.into(),
            master: None,
        }
    }

    #[test]
    fn ifindex_of_loopback_and_of_nothing() {
        assert!(ifindex("lo").is_some());
        assert_eq!(ifindex("offloadd-none0"), None);
        assert_eq!(ifindex("bad\0name"), None);
    }

    #[test]
    fn current_has_loopback() {
        let s = LinkSnapshot::current().unwrap();
        assert!(s.contains("lo"), "{:?}", s);
    }

    #[test]
    fn appear_disappear_and_repeat() {
        let mut s = LinkSnapshot::default();
        assert!(s.update(&new(5, "wan0")));
        assert!(!s.update(&new(5, "wan0")), "same again is no change");
        assert_eq!(s.get("wan0").unwrap().index, 5);
        assert!(s.update(&LinkEvent::Del { index: 5 }));
        assert!(!s.contains("wan0"));
        assert!(!s.update(&LinkEvent::Del { index: 5 }));
    }

    #[test]
    fn rename_drops_the_old_name() {
        let mut s = LinkSnapshot::default();
        s.update(&new(7, "eth1"));
        assert!(s.update(&new(7, "wan")));
        assert_eq!(s.names().collect::<Vec<_>>(), ["wan"]);
    }

    #[test]
    fn recreated_device_gets_its_new_index_and_a_late_delete_is_ignored() {
        let mut s = LinkSnapshot::default();
        s.update(&new(3, "wan0"));
        // The new device appears before we read the old one's deletion.
        assert!(s.update(&new(9, "wan0")));
        assert!(!s.update(&LinkEvent::Del { index: 3 }));
        assert_eq!(s.get("wan0").unwrap().index, 9);
    }

    #[test]
    fn enslaving_is_a_change() {
        let mut s = LinkSnapshot::default();
        s.update(&new(2, "eth0"));
        let port = LinkEvent::New {
            index: 2,
            name: "eth0".into(),
            master: Some(10),
        };
        assert!(s.update(&port));
        assert_eq!(s.get("eth0").unwrap().master, Some(10));
    }

    #[test]
    fn hardware_devices_are_present_lowers_or_the_device() {
        let mut s = LinkSnapshot::from_names(["br-lan", "eth0", "eth1", "wan"]);
        s.set_lowers("br-lan", vec!["eth0".into(), "eth1".into(), "gone".into()]);
        assert_eq!(s.hardware_devices("br-lan"), ["eth0", "eth1"]);
        assert_eq!(s.hardware_devices("wan"), ["wan"]);
        s.set_lowers("br-empty", vec![]);
        assert!(s.hardware_devices("br-empty").is_empty());
    }
}
