//! `check`'s findings about the kernel's nf_tables features, the devices the flowtable
//! would get, and what ConnectX (mlx5) ports need for hardware offload.

use super::{f, Facts, Finding, Level};

fn yes_no(b: Option<bool>) -> &'static str {
    match b {
        Some(true) => "yes",
        Some(false) => "no",
        None => "not known",
    }
}

/// Each feature offloadd uses, as the trial batches found it.
pub(super) fn features(x: &Facts, out: &mut Vec<Finding>) {
    let ft = match &x.features {
        Some(Ok(ft)) => ft,
        Some(Err(e)) => {
            out.push(f(
                Level::Warn,
                format!("kernel features: could not try them: {e}"),
                None,
            ));
            return;
        }
        None => return,
    };
    let mut line = format!(
        "kernel features (each tried, nothing committed): flowtables {}, table owner flag {}",
        yes_no(Some(ft.flowtables)),
        yes_no(ft.owner)
    );
    if ft.flowtables {
        line.push_str(&format!(
            ", flowtable counter {}, hooks kept by name {}",
            yes_no(ft.counter),
            yes_no(ft.hooks_by_name)
        ));
    }
    out.push(f(Level::Ok, line, None));
    if ft.owner == Some(false) {
        out.push(f(
            Level::Warn,
            "table owner flag: no (Linux < 5.12): if offloadd is killed, table inet offloadd stays and keeps offloading",
            Some("after a crash remove it with `nft delete table inet offloadd` (systemd restarts offloadd, which replaces it)"),
        ));
    }
    if ft.counter == Some(false) {
        out.push(f(
            Level::Warn,
            "flowtable counter: no (Linux < 5.7): conntrack's byte and packet counts stop when a flow is offloaded",
            Some("set [offload] counter = false to say so in the config; accounting (nlbwmon) undercounts offloaded flows"),
        ));
    }
    if ft.hooks_by_name == Some(false) {
        out.push(f(
            Level::Ok,
            "hooks kept by name: no (Linux < 6.16): a configured device that does not exist yet is added by offloadd when it appears",
            None,
        ));
    }
}

/// No flowtable device at all, and ConnectX ports that cannot take hardware offload yet.
pub(super) fn devices(x: &Facts, hardware: bool, out: &mut Vec<Finding>) {
    let none = matches!(&x.plan, Some(Ok(d)) if d.devices().next().is_none());
    let configured = matches!(&x.config, Some(Ok(c)) if !c.offload.devices.is_empty());
    if none {
        let what = if configured {
            "none of the configured devices exists"
        } else {
            "no devices are configured ([offload] devices is empty)"
        };
        let here = if x.present.is_empty() {
            "none".to_string()
        } else {
            x.present.join(", ")
        };
        out.push(f(
            Level::Fail,
            format!("no flowtable devices: {what}, so nothing will be offloaded (devices here: {here})"),
            Some("set [offload] devices to this machine's LAN and WAN devices (`ip -br link`), then `offloadd plan`"),
        ));
    }
    if !hardware {
        return;
    }
    for (port, hw_tc) in &x.mlx5 {
        let missing = crate::link::mlx5_missing(port, *hw_tc);
        let rep = port
            .port_name
            .as_deref()
            .map(|n| format!(", representor {n}"))
            .unwrap_or_default();
        if missing.is_empty() {
            out.push(f(
                Level::Ok,
                format!(
                    "mlx5 {} (pci/{}): eswitch in switchdev mode{rep}, hw-tc-offload {}",
                    port.device,
                    port.pci,
                    match hw_tc {
                        Some(true) => "on",
                        Some(false) => "off",
                        None => "not known",
                    }
                ),
                None,
            ));
        } else {
            out.push(f(
                Level::Warn,
                format!(
                    "mlx5 {} (pci/{}): hardware offload needs: {}",
                    port.device,
                    port.pci,
                    missing.join("; ")
                ),
                Some("without them the flowtable uses software offload on this port (hardware = \"auto\")"),
            ));
        }
    }
}
