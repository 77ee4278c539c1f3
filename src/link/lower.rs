//! Lower devices from sysfs, as fw4 resolves them for hardware offload.
//!
//! The kernel links stacked devices both ways in sysfs: a bridge has `lower_<port>` for
//! each port, a VLAN `lower_<parent>`, a bond `lower_<slave>`. Hardware offload has to be
//! set up on the device whose driver forwards the packets, so a bridge or VLAN is
//! replaced by its leaves. sysfs shows the network namespace it was mounted in (`ip netns
//! exec` remounts it); a name that is not a present device is dropped by the caller.

use std::path::Path;

/// Where the kernel lists network devices.
pub const SYSFS_NET: &str = "/sys/class/net";

/// Deepest stack we follow (bridge over VLAN over bond is 3); guards against loops.
const MAX_DEPTH: usize = 8;

/// The leaf lower devices of `dev` under `sysfs_net`, sorted and without duplicates.
/// Empty when `dev` has no lower devices (or sysfs does not know it).
pub fn lower_devices(sysfs_net: &Path, dev: &str) -> Vec<String> {
    let mut out = Vec::new();
    for lower in direct_lowers(sysfs_net, dev) {
        collect_leaves(sysfs_net, &lower, 1, &mut out);
    }
    out.sort();
    out.dedup();
    out
}

fn collect_leaves(sysfs_net: &Path, dev: &str, depth: usize, out: &mut Vec<String>) {
    let lowers = if depth < MAX_DEPTH {
        direct_lowers(sysfs_net, dev)
    } else {
        Vec::new()
    };
    if lowers.is_empty() {
        out.push(dev.to_string());
    }
    for l in lowers {
        collect_leaves(sysfs_net, &l, depth + 1, out);
    }
}

fn direct_lowers(sysfs_net: &Path, dev: &str) -> Vec<String> {
    // A name with a slash would walk out of the directory.
    if dev.is_empty() || dev.contains('/') || dev == "." || dev == ".." {
        return Vec::new();
    }
    let Ok(entries) = std::fs::read_dir(sysfs_net.join(dev)) else {
        return Vec::new();
    };
    let mut v: Vec<String> = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            e.file_name()
                .to_str()
                .and_then(|n| n.strip_prefix("lower_"))
                .map(str::to_string)
        })
        .collect();
    v.sort();
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::path::PathBuf;

    /// A fake /sys/class/net: each (device, lowers) pair becomes a directory with
    /// `lower_*` entries, as the kernel lays them out.
    fn tree(name: &str, devices: &[(&str, &[&str])]) -> PathBuf {
        let root =
            std::env::temp_dir().join(format!("offloadd-sysfs-{}-{name}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        for (dev, lowers) in devices {
            fs::create_dir_all(root.join(dev)).unwrap();
            fs::write(root.join(dev).join("ifindex"), "1\n").unwrap();
            for l in *lowers {
                fs::create_dir_all(root.join(dev).join(format!("lower_{l}"))).unwrap();
            }
        }
        root
    }

    #[test]
    fn bridge_resolves_to_its_ports() {
        let root = tree(
            "bridge",
            &[("br-lan", &["lan2", "lan1"]), ("lan1", &[]), ("lan2", &[])],
        );
        assert_eq!(lower_devices(&root, "br-lan"), ["lan1", "lan2"]);
        assert!(lower_devices(&root, "lan1").is_empty());
        fs::remove_dir_all(root).unwrap();
    }

    #[test]
    fn vlan_and_bridge_of_vlans_resolve_to_the_nic() {
        let root = tree(
            "vlan",
            &[
                ("eth0.2", &["eth0"]),
                ("eth0.3", &["eth0"]),
                ("br-guest", &["eth0.3", "wlan1"]),
                ("eth0", &[]),
                ("wlan1", &[]),
            ],
        );
        assert_eq!(lower_devices(&root, "eth0.2"), ["eth0"]);
        assert_eq!(lower_devices(&root, "br-guest"), ["eth0", "wlan1"]);
        fs::remove_dir_all(root).unwrap();
    }

    #[test]
    fn unknown_devices_loops_and_bad_names_end() {
        let root = tree("loop", &[("a", &["b"]), ("b", &["a"])]);
        assert!(lower_devices(&root, "nosuch").is_empty());
        assert!(lower_devices(&root, "../..").is_empty());
        // a -> b -> a -> ... stops at the depth limit instead of recursing forever.
        let l = lower_devices(&root, "a");
        assert!(l.len() == 1 && (l[0] == "a" || l[0] == "b"), "{l:?}");
        fs::remove_dir_all(root).unwrap();
    }
}
