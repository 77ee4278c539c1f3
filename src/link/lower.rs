//! The devices hardware offload is set up on, resolved from sysfs as fw4 resolves them.
//!
//! The kernel links stacked devices both ways in sysfs: a bridge has `lower_<port>` for
//! each port, a VLAN `lower_<parent>`, a DSA user port (`lan1`, `wan`) `lower_<conduit>`
//! (`eth0`), a macvlan its parent. Hardware offload is set up by the driver that forwards
//! the packets, so bridges and VLANs are replaced by what is under them, but nothing else
//! is descended: a DSA port's conduit only sees frames tagged for the switch, and the
//! switch's flow offload is programmed through the port. A device whose driver offers
//! `hw-tc-offload` itself is kept as it is. sysfs shows the network namespace it was
//! mounted in (`ip netns exec` remounts it); a name that is not a present device is
//! dropped by the caller.

use std::path::Path;

/// Where the kernel lists network devices.
pub const SYSFS_NET: &str = "/sys/class/net";

/// Deepest stack we follow (bridge over VLAN over bridge is 3); guards against loops.
const MAX_DEPTH: usize = 8;

/// The devices hardware offload names for `dev`, sorted and without duplicates: `dev`
/// itself unless it is a bridge or VLAN without `hw-tc-offload` (`has_hw_tc`), whose
/// lower devices are resolved the same way. A bridge without ports gives none.
pub fn lower_devices(sysfs_net: &Path, dev: &str, has_hw_tc: &dyn Fn(&str) -> bool) -> Vec<String> {
    let mut out = Vec::new();
    collect(sysfs_net, dev, 0, has_hw_tc, &mut out);
    out.sort();
    out.dedup();
    out
}

fn collect(
    sysfs_net: &Path,
    dev: &str,
    depth: usize,
    has_hw_tc: &dyn Fn(&str) -> bool,
    out: &mut Vec<String>,
) {
    let stacked = matches!(devtype(sysfs_net, dev).as_deref(), Some("bridge" | "vlan"));
    if !stacked || depth >= MAX_DEPTH || has_hw_tc(dev) {
        out.push(dev.to_string());
        return;
    }
    for lower in direct_lowers(sysfs_net, dev) {
        collect(sysfs_net, &lower, depth + 1, has_hw_tc, out);
    }
}

/// `DEVTYPE=` of the device's uevent (`bridge`, `vlan`, `dsa`, `wlan`, ...); a bridge is
/// also known by its `bridge/` directory.
fn devtype(sysfs_net: &Path, dev: &str) -> Option<String> {
    if !safe_name(dev) {
        return None;
    }
    let dir = sysfs_net.join(dev);
    let uevent = std::fs::read_to_string(dir.join("uevent")).unwrap_or_default();
    let ty = uevent
        .lines()
        .find_map(|l| l.strip_prefix("DEVTYPE="))
        .map(str::to_string);
    ty.or_else(|| dir.join("bridge").is_dir().then(|| "bridge".to_string()))
}

fn safe_name(dev: &str) -> bool {
    // A name with a slash would walk out of the directory.
    !(dev.is_empty() || dev.contains('/') || dev == "." || dev == "..")
}

fn direct_lowers(sysfs_net: &Path, dev: &str) -> Vec<String> {
    if !safe_name(dev) {
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
#[path = "lower_tests.rs"]
mod tests;
