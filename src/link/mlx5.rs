//! What hardware flow offload needs on a ConnectX (mlx5) port, read from sysfs. The mlx5
//! driver offloads flowtables (TC flower rules underneath) only from its eswitch in
//! switchdev mode, on the uplink and VF representors, with `hw-tc-offload` on; in the
//! default legacy mode every flowtable trial is refused and the reason says little.

use std::fs;
use std::path::Path;

use serde::Serialize;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Mlx5Port {
    pub device: String,
    /// The PCI function, e.g. `0000:3b:00.0` (devlink's `pci/<address>`).
    pub pci: String,
    /// `Some(true)` in switchdev mode, `Some(false)` in legacy, `None` when unreadable.
    pub switchdev: Option<bool>,
    /// `phys_port_name`: `p0` for an uplink representor, `pf0vf1` for a VF's.
    pub port_name: Option<String>,
}

fn read_trimmed(p: &Path) -> Option<String> {
    let s = fs::read_to_string(p).ok()?;
    let s = s.trim();
    (!s.is_empty()).then(|| s.to_string())
}

fn link_name(p: &Path) -> Option<String> {
    Some(
        fs::read_link(p)
            .ok()?
            .file_name()?
            .to_string_lossy()
            .into_owned(),
    )
}

/// The mlx5 facts of `dev` under `sysfs_net` (`/sys/class/net`), `None` for another driver.
pub fn mlx5_port(sysfs_net: &Path, dev: &str) -> Option<Mlx5Port> {
    let d = sysfs_net.join(dev);
    if link_name(&d.join("device/driver"))? != "mlx5_core" {
        return None;
    }
    let pci = link_name(&d.join("device")).unwrap_or_else(|| "?".into());
    // Older kernels have the mode in compat/devlink/mode; everywhere, phys_switch_id can
    // be read only from a representor, i.e. in switchdev mode.
    let switchdev = match read_trimmed(&d.join("compat/devlink/mode")) {
        Some(mode) => Some(mode == "switchdev"),
        None => Some(read_trimmed(&d.join("phys_switch_id")).is_some()),
    };
    Some(Mlx5Port {
        device: dev.into(),
        pci,
        switchdev,
        port_name: read_trimmed(&d.join("phys_port_name")),
    })
}

/// What is missing for hardware offload, each with its command; empty when nothing is.
/// `hw_tc` is the device's `hw-tc-offload` feature, when ethtool could read it.
pub fn mlx5_missing(p: &Mlx5Port, hw_tc: Option<bool>) -> Vec<String> {
    let mut out = Vec::new();
    if p.switchdev == Some(false) {
        out.push(format!(
            "the eswitch of pci/{} is in legacy mode: `devlink dev eswitch set pci/{} mode switchdev` (unbind its VFs first; the uplink becomes a representor)",
            p.pci, p.pci
        ));
    }
    if hw_tc == Some(false) {
        out.push(format!("`ethtool -K {} hw-tc-offload on`", p.device));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    /// A ConnectX-5 port as sysfs shows it: device -> the PCI function, its driver link,
    /// and (in switchdev mode) phys_switch_id and phys_port_name.
    fn port(root: &Path, dev: &str, driver: &str, switchdev: bool) {
        let pci = root.join("devices/0000:3b:00.0");
        fs::create_dir_all(pci.join("../drivers").join(driver)).unwrap();
        fs::create_dir_all(&pci).unwrap();
        let _ = symlink(pci.join("../drivers").join(driver), pci.join("driver"));
        let d = root.join("net").join(dev);
        fs::create_dir_all(&d).unwrap();
        symlink(&pci, d.join("device")).unwrap();
        if switchdev {
            fs::write(d.join("phys_switch_id"), "b8cef60300a1b2c3\n").unwrap();
            fs::write(d.join("phys_port_name"), "p0\n").unwrap();
        }
    }

    fn tree(name: &str) -> std::path::PathBuf {
        let root =
            std::env::temp_dir().join(format!("offloadd-mlx5-{}-{name}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        root
    }

    #[test]
    fn legacy_mode_names_the_devlink_command() {
        let root = tree("legacy");
        port(&root, "ens1f0np0", "mlx5_core", false);
        let p = mlx5_port(&root.join("net"), "ens1f0np0").unwrap();
        assert_eq!(p.pci, "0000:3b:00.0");
        assert_eq!(p.switchdev, Some(false));
        let missing = mlx5_missing(&p, Some(false));
        assert!(
            missing[0].contains("devlink dev eswitch set pci/0000:3b:00.0 mode switchdev"),
            "{missing:?}"
        );
        assert_eq!(missing[1], "`ethtool -K ens1f0np0 hw-tc-offload on`");
        let _ = fs::remove_dir_all(&root);
    }

    #[test]
    fn a_switchdev_representor_with_hw_tc_on_needs_nothing() {
        let root = tree("switchdev");
        port(&root, "ens1f0np0", "mlx5_core", true);
        let p = mlx5_port(&root.join("net"), "ens1f0np0").unwrap();
        assert_eq!(
            (p.switchdev, p.port_name.as_deref()),
            (Some(true), Some("p0"))
        );
        assert!(mlx5_missing(&p, Some(true)).is_empty());
        let _ = fs::remove_dir_all(&root);
    }

    #[test]
    fn other_drivers_and_virtual_devices_are_not_mlx5() {
        let root = tree("other");
        port(&root, "eno1", "igb", false);
        fs::create_dir_all(root.join("net/br-lan")).unwrap();
        assert_eq!(mlx5_port(&root.join("net"), "eno1"), None);
        assert_eq!(mlx5_port(&root.join("net"), "br-lan"), None);
        let _ = fs::remove_dir_all(&root);
    }
}
