//! The hardware decision and the isolation of refused devices: pure logic over the
//! `Kernel` trait, so a fake kernel can test it (`kernel_tests.rs`).

use std::collections::BTreeSet;

use serde::Serialize;

use super::error::NftError;
use crate::config::Hardware;
use crate::plan::Desired;

/// Result of the hardware question for one apply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum HardwareOutcome {
    /// `hardware = "off"`: never tried.
    Off,
    /// Every device is in the hardware flowtable.
    Active,
    /// `hardware = "auto"` and some devices refused, (device, why): they use software
    /// offload. The others (`accepted`) are in the hardware flowtable; none when empty.
    Fallback {
        refused: Vec<(String, String)>,
        accepted: Vec<String>,
    },
}

impl std::fmt::Display for HardwareOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HardwareOutcome::Off => f.write_str("software (hardware = \"off\")"),
            HardwareOutcome::Active => f.write_str("hardware"),
            HardwareOutcome::Fallback { refused, accepted } => {
                let devs: Vec<&str> = refused.iter().map(|(d, _)| d.as_str()).collect();
                if accepted.is_empty() {
                    write!(f, "software (hardware refused by {})", devs.join(", "))
                } else {
                    write!(
                        f,
                        "hardware on {}, software on {} (refused)",
                        accepted.join(", "),
                        devs.join(", ")
                    )
                }
            }
        }
    }
}

/// The kernel operations the decisions need (a fake implements it in tests).
pub trait Kernel {
    /// Makes the kernel hold `d`; Ok(false) when it already did.
    fn apply(&mut self, d: &Desired) -> Result<bool, NftError>;
    /// Validates `d` without committing it.
    fn trial(&mut self, d: &Desired) -> Result<(), NftError>;
    /// Validates a flowtable on `device` alone (`flags offload` when `hw`) without
    /// committing it.
    fn probe(&mut self, device: &str, hw: bool) -> Result<(), NftError>;
    /// A hint about hardware offload on `device` from the driver (ethtool
    /// `hw-tc-offload`), to add to a refusal.
    fn hint(&mut self, device: &str) -> Option<String>;
}

/// What `apply_with_hardware` did.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub changed: bool,
    /// What the kernel now holds.
    pub desired: Desired,
    pub hardware: HardwareOutcome,
    /// Devices the kernel refused even for software offload, with its reason: left out
    /// so the others still converge.
    pub left_out: Vec<(String, String)>,
}

/// Applies `desired` under the hardware policy. `desired.flowtable.hw_offload` is what
/// the plan asked for. With `Auto` the devices that refuse hardware (found by probing
/// each alone) go to a software flowtable and the rest stay on hardware; with `Require`
/// any refusal is an error naming the device. A device the kernel refuses outright is
/// left out and named, and the rest applied.
pub fn apply_with_hardware<K: Kernel>(
    k: &mut K,
    desired: &Desired,
    hw: Hardware,
) -> Result<Outcome, NftError> {
    let mut d = desired.clone();
    let mut left_out = Vec::new();
    loop {
        let (candidate, hardware) = decide_hardware(k, &d, hw)?;
        let refusal = match k.apply(&candidate) {
            Ok(changed) => {
                return Ok(Outcome {
                    changed,
                    desired: candidate,
                    hardware,
                    left_out,
                })
            }
            Err(e) => e,
        };
        let NftError::Refused { devices, .. } = &refusal else {
            return Err(refusal);
        };
        let mut isolated = false;
        for dev in devices {
            if let Err(e) = k.probe(dev, false) {
                left_out.push((dev.clone(), e.to_string()));
                d.remove_device(dev);
                isolated = true;
            }
        }
        if !isolated {
            return Err(refusal);
        }
    }
}

fn decide_hardware<K: Kernel>(
    k: &mut K,
    d: &Desired,
    hw: Hardware,
) -> Result<(Desired, HardwareOutcome), NftError> {
    let wants_hw = d.flowtable.as_ref().is_some_and(|f| f.hw_offload);
    let all_sw = d.software_only();
    if hw == Hardware::Off || !wants_hw {
        return Ok((all_sw, HardwareOutcome::Off));
    }
    let mut all_hw = all_sw.clone();
    if let Some(ft) = &mut all_hw.flowtable {
        ft.hw_offload = true;
    }
    let trial = if d.shaped.is_empty() {
        k.trial(&all_hw)
    } else {
        // Some device must stay on software: go straight to the per-device decision.
        Err(NftError::HardwareRefused {
            devices: vec![],
            reason: String::new(),
        })
    };
    match trial {
        Ok(()) => return Ok((all_hw, HardwareOutcome::Active)),
        Err(NftError::HardwareRefused { .. }) => {}
        Err(e) => return Err(e),
    }
    let devices: Vec<String> = all_hw.devices().map(str::to_string).collect();
    let mut refused: Vec<(String, String)> = devices
        .iter()
        .filter_map(|dev| {
            d.shaped.get(dev.as_str()).map(|what| {
                (dev.clone(), format!("shaped ({what}): hardware offload would bypass the shaper, so it stays on software offload"))
            })
        })
        .collect();
    for dev in devices.iter().filter(|x| !d.shaped.contains_key(*x)) {
        let why = match k.probe(dev, true) {
            Ok(()) => continue,
            Err(NftError::HardwareRefused { reason, .. }) => short_reason(&reason),
            // Gone since the trial: the caller plans again with the devices that exist.
            Err(e @ NftError::DeviceGone { .. }) => return Err(e),
            Err(e) => e.to_string(),
        };
        let why = match k.hint(dev) {
            Some(h) => format!("{why}; {h}"),
            None => why,
        };
        refused.push((dev.clone(), why));
    }
    if refused.is_empty() {
        // Each device alone is fine but not together: report the set.
        refused = devices
            .iter()
            .map(|d| {
                (
                    d.clone(),
                    "refused in combination with the other devices".into(),
                )
            })
            .collect();
    }
    if hw == Hardware::Require {
        let names = refused.iter().map(|(d, _)| d.clone()).collect();
        let why = refused
            .iter()
            .map(|(d, r)| format!("{d}: {r}"))
            .collect::<Vec<_>>()
            .join("; ");
        return Err(NftError::HardwareRefused {
            devices: names,
            reason: format!("{why}; hardware = \"require\" refuses to go on without it (use \"auto\" to fall back to software offload)"),
        });
    }
    let refused_set: BTreeSet<String> = refused.iter().map(|(d, _)| d.clone()).collect();
    let accepted: Vec<String> = devices
        .iter()
        .filter(|d| !refused_set.contains(*d))
        .cloned()
        .collect();
    let layout = if accepted.is_empty() {
        all_sw
    } else {
        all_sw.split(&refused_set)
    };
    Ok((layout, HardwareOutcome::Fallback { refused, accepted }))
}

fn short_reason(reason: &str) -> String {
    reason
        .split(';')
        .next()
        .unwrap_or(reason)
        .trim()
        .to_string()
}

#[cfg(test)]
#[path = "hardware_tests.rs"]
mod tests;
