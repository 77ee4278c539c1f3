//! Fake `/sys/class/net` trees shaped like real boards, for tests: each device is a
//! directory with a `uevent` (its DEVTYPE) and `lower_*` entries, as the kernel lays
//! them out.

use std::fs;
use std::path::PathBuf;

/// One device: name, DEVTYPE (`""` for none: a plain NIC or a DSA conduit), lowers.
pub type Dev<'a> = (&'a str, &'a str, &'a [&'a str]);

/// A tree under the temp directory, unique per test name; removed on drop.
pub struct Tree(pub PathBuf);

impl Tree {
    pub fn new(name: &str, devices: &[Dev]) -> Tree {
        let root =
            std::env::temp_dir().join(format!("offloadd-sysfs-{}-{name}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        for (dev, ty, lowers) in devices {
            let dir = root.join(dev);
            fs::create_dir_all(&dir).unwrap();
            let mut uevent = format!("INTERFACE={dev}\nIFINDEX=1\n");
            if !ty.is_empty() {
                uevent = format!("DEVTYPE={ty}\n{uevent}");
            }
            fs::write(dir.join("uevent"), uevent).unwrap();
            for l in *lowers {
                fs::create_dir_all(dir.join(format!("lower_{l}"))).unwrap();
            }
        }
        Tree(root)
    }

    pub fn names<'a>(devices: &[Dev<'a>]) -> Vec<&'a str> {
        devices.iter().map(|(d, _, _)| *d).collect()
    }
}

impl Drop for Tree {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// MT7621 with a DSA switch: conduit `eth0` (its MAC has the PPE: `hw-tc-offload`), user
/// ports `lan1..4` and `wan`, `br-lan` over the lan ports, PPPoE over VLAN 7 (`wan.7`).
pub const MT7621: &[Dev] = &[
    ("eth0", "", &[]),
    ("lan1", "dsa", &["eth0"]),
    ("lan2", "dsa", &["eth0"]),
    ("lan3", "dsa", &["eth0"]),
    ("lan4", "dsa", &["eth0"]),
    ("wan", "dsa", &["eth0"]),
    ("br-lan", "bridge", &["lan1", "lan2", "lan3", "lan4"]),
    ("wan.7", "vlan", &["wan"]),
    ("pppoe-wan", "ppp", &[]),
];

/// Filogic (MT7986): DSA ports `lan1..3` on conduit `eth0`, WAN on its own MAC `eth1`,
/// Wi-Fi `phy0-ap0` bridged into `br-lan`.
pub const FILOGIC: &[Dev] = &[
    ("eth0", "", &[]),
    ("eth1", "", &[]),
    ("lan1", "dsa", &["eth0"]),
    ("lan2", "dsa", &["eth0"]),
    ("lan3", "dsa", &["eth0"]),
    ("phy0-ap0", "wlan", &[]),
    ("br-lan", "bridge", &["lan1", "lan2", "lan3", "phy0-ap0"]),
];

/// An x86 box with plain NICs: `eth0` WAN, `eth1` and `eth2` in `br-lan`, a guest VLAN
/// `eth1.400`, and WireGuard `wg0`.
pub const X86: &[Dev] = &[
    ("eth0", "", &[]),
    ("eth1", "", &[]),
    ("eth2", "", &[]),
    ("br-lan", "bridge", &["eth1", "eth2"]),
    ("eth1.400", "vlan", &["eth1"]),
    ("wg0", "wireguard", &[]),
];
