//! How the daemon's decisions show in `status`: pure updates of the `Status` value.

use std::time::Duration;

use crate::config::Config;
use crate::conntrack::unix_ms;
use crate::nft::{family_name, Actual, Applied, HardwareOutcome, NftError};
use crate::view::status::{Device, DeviceState, LastApply, Refusal, Status};

use super::Role;

/// The part of `status` known before anything is applied.
pub fn initial(cfg: &Config, config_path: &str) -> Status {
    Status {
        version: env!("CARGO_PKG_VERSION").into(),
        pid: std::process::id(),
        started_unix_ms: unix_ms(),
        config: config_path.into(),
        hardware: crate::view::status::Hardware {
            policy: cfg.offload.hardware.to_string(),
            state: "none".into(),
            refused: vec![],
        },
        resync_interval_ms: cfg.conntrack.resync_interval.as_millis() as u64,
        flush_on: cfg.offload.flush_on_change.to_string(),
        ..Status::default()
    }
}

pub fn set_role(st: &mut Status, role: &Role, cfg: &Config, actual: &Actual) {
    let (name, why) = match role {
        Role::Manage { why } => ("manage", why),
        Role::Observe { why } => ("observe", why),
    };
    st.role = name.into();
    st.role_why = why.clone();
    st.resync_interval_ms = cfg.conntrack.resync_interval.as_millis() as u64;
    st.hardware.policy = cfg.offload.hardware.to_string();
    st.flush_on = cfg.offload.flush_on_change.to_string();
    st.other_flowtables = actual
        .foreign_flowtables
        .iter()
        .map(|ft| {
            format!(
                "{} {} {}: devices {}",
                family_name(ft.family),
                ft.table,
                ft.name,
                ft.devices.join(", ")
            )
        })
        .collect();
    st.duplicates = match role {
        Role::Manage { .. } => duplicates(cfg, actual),
        Role::Observe { .. } => Vec::new(),
    };
    if let Role::Observe { .. } = role {
        st.devices = cfg
            .offload
            .devices
            .iter()
            .map(|d| {
                let covered = actual
                    .foreign_flowtables
                    .iter()
                    .any(|ft| ft.devices.contains(d));
                let state = if covered {
                    DeviceState::Observed
                } else {
                    DeviceState::NotOffloaded
                };
                Device::new(d, state)
            })
            .collect();
        st.hardware.state = "none".into();
        st.hardware.refused.clear();
        st.warnings.clear();
    }
}

/// Flowtables of other tables that hook one of our devices: with ours that makes two
/// flowtables on one device, and which one a flow lands in depends on hook order.
/// Manage mode: each other flowtable on our devices is a duplicate to turn off.
pub fn duplicates(cfg: &Config, actual: &Actual) -> Vec<String> {
    covering_pairs(cfg, actual)
        .into_iter()
        .map(|(ft, devs)| format!("{ft} also covers {devs}: two flowtables on one device; turn one off (OpenWrt: uncheck software flow offloading in the firewall, or mode = \"auto\")"))
        .collect()
}

/// The other flowtables that cover configured devices, as "flowtable ft in table inet
/// fw4 covers lan0": in manage mode duplicates, in observe mode what is observed.
pub fn covering(cfg: &Config, actual: &Actual) -> Vec<String> {
    covering_pairs(cfg, actual)
        .into_iter()
        .map(|(ft, devs)| format!("{ft} covers {devs}"))
        .collect()
}

/// ("flowtable ft in table inet fw4", "lan0, wan0") for each other flowtable on our devices.
fn covering_pairs(cfg: &Config, actual: &Actual) -> Vec<(String, String)> {
    actual
        .foreign_flowtables
        .iter()
        .filter_map(|ft| {
            let shared: Vec<&str> = cfg
                .offload
                .devices
                .iter()
                .filter(|d| ft.devices.contains(d))
                .map(String::as_str)
                .collect();
            (!shared.is_empty()).then(|| {
                (
                    format!(
                        "flowtable {} in table {} {}",
                        ft.name,
                        family_name(ft.family),
                        ft.table
                    ),
                    shared.join(", "),
                )
            })
        })
        .collect()
}

/// A successful apply: devices, hardware, kernel facts, warnings. A hardware refusal is
/// kept in `hardware.refused` (metrics) and explained once, at the device it belongs
/// to (`Device::why`); it is no warning: software offload runs.
pub fn applied(st: &mut Status, cfg: &Config, a: &Applied) {
    if a.desired.flowtable.is_some() {
        st.kernel_flowtables = Some(true);
    }
    st.owner_flag = Some(a.owner);
    st.priority = Some(a.desired.priority);
    st.priority_why = a.priority_why.clone();
    let (refused, accepted): (Vec<Refusal>, Vec<String>) = match &a.hardware {
        HardwareOutcome::Fallback { refused, accepted } => (
            refused
                .iter()
                .map(|(d, r)| Refusal {
                    device: d.clone(),
                    reason: r.clone(),
                })
                .collect(),
            accepted.clone(),
        ),
        _ => (vec![], vec![]),
    };
    st.hardware.state = match (&a.hardware, accepted.is_empty()) {
        (HardwareOutcome::Off, _) => "off",
        (HardwareOutcome::Active, _) => "active",
        (HardwareOutcome::Fallback { .. }, true) => "fallback (software offload)",
        (HardwareOutcome::Fallback { .. }, false) => {
            "fallback (software offload; some devices would take hardware alone)"
        }
    }
    .into();
    st.devices = cfg
        .offload
        .devices
        .iter()
        .map(|d| device_state(d, a, &refused))
        .collect();
    st.warnings = a
        .desired
        .missing
        .iter()
        .map(|d| format!("{d}: configured device does not exist; added when it appears"))
        .chain(
            a.left_out
                .iter()
                .map(|(d, why)| format!("{d}: left out of the flowtable: {why}")),
        )
        .chain(a.desired.shaped.iter().map(|(d, what)| {
            format!("{d}: shaped ({what}); software offload keeps the shaping, hardware offload would bypass it")
        }))
        .collect();
    st.hardware.refused = refused;
    st.last_apply = Some(LastApply {
        at_unix_ms: unix_ms(),
        took_ms: ms(a.took),
        changed: a.changed,
        error: None,
    });
}

/// Where configured device `name` ended up: the kernel devices it stands for, whether
/// they are on hardware, software, or refused, and why.
fn device_state(name: &str, a: &Applied, hw_refused: &[Refusal]) -> Device {
    if a.desired.missing.iter().any(|m| m == name) {
        return Device::new(name, DeviceState::Missing);
    }
    let via = a.desired.via.get(name).cloned().unwrap_or_default();
    let kernel_devices = if via.is_empty() {
        vec![name.to_string()]
    } else {
        via.clone()
    };
    let mut why: Vec<String> = Vec::new();
    let left: Vec<&str> = a
        .left_out
        .iter()
        .filter(|(d, _)| kernel_devices.contains(d))
        .map(|(d, r)| {
            why.push(format!("{d}: {r}"));
            d.as_str()
        })
        .collect();
    for r in hw_refused
        .iter()
        .filter(|r| kernel_devices.contains(&r.device))
    {
        why.push(format!("{}: hardware refused: {}", r.device, r.reason));
    }
    let hw =
        a.desired.flowtable.as_ref().is_some_and(|ft| {
            ft.hw_offload && kernel_devices.iter().all(|d| ft.devices.contains(d))
        });
    let state = if left.len() == kernel_devices.len() {
        DeviceState::Refused
    } else if hw {
        DeviceState::Hardware
    } else {
        DeviceState::InFlowtable
    };
    Device {
        name: name.into(),
        state,
        via,
        why: (!why.is_empty()).then(|| why.join("; ")),
    }
}

/// A failed apply or reload: the previous ruleset stays, and status says so.
pub fn failed(st: &mut Status, error: &anyhow::Error, took: Duration) {
    if let Some(NftError::NoFlowtableSupport) = error.downcast_ref::<NftError>() {
        st.kernel_flowtables = Some(false);
    }
    if let Some(NftError::HardwareRefused { devices, reason }) = error.downcast_ref::<NftError>() {
        for d in st.devices.iter_mut().filter(|d| devices.contains(&d.name)) {
            d.state = DeviceState::Refused;
            d.why = Some(format!("hardware refused: {reason}"));
        }
    }
    let text = format!("{error:#}");
    st.apply_failures += 1;
    // One such warning, the last: repeated bad reloads must not pile them up.
    st.warnings
        .retain(|w| !w.starts_with("last apply failed: "));
    st.warnings.push(format!("last apply failed: {text}"));
    st.last_apply = Some(LastApply {
        at_unix_ms: unix_ms(),
        took_ms: ms(took),
        changed: false,
        error: Some(text),
    });
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

#[cfg(test)]
#[path = "view_tests.rs"]
mod tests;
