//! The hardware decision and the isolation of refused devices: pure logic over the
//! `Kernel` trait, so a fake kernel can test it (`kernel_tests.rs`).

use std::collections::{BTreeSet, HashMap};

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
    /// `hardware = "auto"` and some devices refused, (device, why): the flowtable is on
    /// software offload, over the configured devices. `accepted` took hardware alone but
    /// stay on software too (see `Desired::software_only` for why there is no mix).
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
                write!(f, "software (hardware refused by {}", devs.join(", "))?;
                if !accepted.is_empty() {
                    write!(
                        f,
                        "; {} would take it, but a flow between hardware and software devices is fast one way only",
                        accepted.join(", ")
                    )?;
                }
                f.write_str(")")
            }
        }
    }
}

/// What one apply changed (`Step` says what was sent).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Change {
    /// A batch was committed. False when the kernel already held the ruleset and
    /// nothing was sent.
    pub changed: bool,
    /// The committed batch deleted flowtables of ours and created them again (a flush,
    /// or a replace of the whole table), so every flow offloaded in them went back to
    /// the normal path. False when only hooks changed, and when the table was created
    /// where there was none (no flow of ours was offloaded).
    pub flushed: bool,
    /// Devices of the batch that were gone when it was read back (deleted between our
    /// plan and the read-back): the kernel holds the rest, and the caller plans again.
    pub vanished: Vec<String>,
}

/// The kernel operations the decisions need (a fake implements it in tests).
pub trait Kernel {
    /// Makes the kernel hold `d`.
    fn apply(&mut self, d: &Desired) -> Result<Change, NftError>;
    /// Whether the kernel still holds `d` exactly, as last applied through this kernel
    /// handle (a read-back; nothing is sent).
    fn holds(&mut self, d: &Desired) -> Result<bool, NftError>;
    /// The device's ifindex now, if it exists: a device deleted and created again under
    /// the same name is a new device, whose driver may answer differently.
    fn ifindex(&mut self, device: &str) -> Option<u32>;
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
    /// A batch was committed (see `Change`).
    pub changed: bool,
    /// Flowtables of ours were deleted and created again (see `Change`).
    pub flushed: bool,
    /// Devices that vanished between the plan and the read-back (see `Change`).
    pub vanished: Vec<String>,
    /// What the kernel now holds.
    pub desired: Desired,
    pub hardware: HardwareOutcome,
    /// Devices the kernel refused even for software offload, with its reason: left out
    /// so the others still converge.
    pub left_out: Vec<(String, String)>,
}

/// What the hardware decision remembers between applies (on the nft thread).
#[derive(Debug, Default)]
pub struct Memory {
    /// Each device's hardware verdict, by name and ifindex: `None` accepted, `Some(why)`
    /// refused. Probing binds and unbinds ingress hooks and driver flow blocks, so a
    /// device is probed once, again only when it is a new device or on reload.
    verdicts: HashMap<(String, u32), Option<String>>,
    /// The plan and policy last applied, and what came of it: the same plan again
    /// (a link event of an unrelated device) sends nothing and probes nothing.
    last: Option<(Desired, Hardware, Outcome)>,
}

impl Memory {
    /// Forgets verdicts and the last apply (reload: the admin may have changed drivers
    /// or switchdev mode).
    pub fn forget(&mut self) {
        *self = Memory::default();
    }
}

/// Applies `desired` under the hardware policy. `desired.flowtable.hw_offload` is what
/// the plan asked for. With `Auto`, when a device refuses hardware (found by probing
/// each alone) or is shaped, the flowtable goes to software over the configured
/// devices, with the refusals named; with `Require`
/// any refusal is an error naming the device. A device the kernel refuses outright is
/// left out and named, and the rest applied. A plan equal to the last one applied, with
/// the kernel still holding its outcome, changes nothing and probes nothing.
pub fn apply_with_hardware<K: Kernel>(
    k: &mut K,
    desired: &Desired,
    hw: Hardware,
    mem: &mut Memory,
) -> Result<Outcome, NftError> {
    if let Some((d, h, out)) = &mem.last {
        if d == desired && *h == hw && k.holds(&out.desired)? {
            return Ok(Outcome {
                changed: false,
                flushed: false,
                vanished: vec![],
                ..out.clone()
            });
        }
    }
    mem.last = None;
    let outcome = apply_isolating(k, desired, hw, &mut mem.verdicts)?;
    if outcome.vanished.is_empty() {
        mem.last = Some((desired.clone(), hw, outcome.clone()));
    }
    Ok(outcome)
}

fn apply_isolating<K: Kernel>(
    k: &mut K,
    desired: &Desired,
    hw: Hardware,
    verdicts: &mut HashMap<(String, u32), Option<String>>,
) -> Result<Outcome, NftError> {
    let mut d = desired.clone();
    let mut left_out = Vec::new();
    loop {
        let (mut candidate, hardware) = decide_hardware(k, &d, hw, verdicts)?;
        let refusal = match k.apply(&candidate) {
            Ok(change) => {
                for dev in &change.vanished {
                    candidate.remove_device(dev);
                }
                return Ok(Outcome {
                    changed: change.changed,
                    flushed: change.flushed,
                    vanished: change.vanished,
                    desired: candidate,
                    hardware,
                    left_out,
                });
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
    verdicts: &mut HashMap<(String, u32), Option<String>>,
) -> Result<(Desired, HardwareOutcome), NftError> {
    let wants_hw = d.flowtable.as_ref().is_some_and(|f| f.hw_offload);
    let all_sw = d.software_only();
    if hw == Hardware::Off || !wants_hw {
        return Ok((all_sw, HardwareOutcome::Off));
    }
    // The plan's own devices: bridge ports and VLAN parents, not the configured devices
    // the software layout uses.
    let mut all_hw = d.clone();
    if let Some(ft) = &mut all_hw.flowtable {
        ft.hw_offload = true;
    }
    let devices: Vec<String> = all_hw.devices().map(str::to_string).collect();
    let keys: Vec<(String, u32)> = devices
        .iter()
        .map(|dev| (dev.clone(), k.ifindex(dev).unwrap_or(0)))
        .collect();
    let trial = if d.shaped.is_empty() {
        k.trial(&all_hw)
    } else {
        // Some device must stay on software: go straight to the per-device decision.
        Err(NftError::HardwareRefused {
            devices: vec![],
            reason: String::new(),
        })
    };
    let shaped_reason = |what: &String| {
        format!("shaped ({what}): hardware offload would bypass the shaper, so it stays on software offload")
    };
    match trial {
        Ok(()) => {
            for key in keys {
                verdicts.insert(key, None);
            }
            return Ok((all_hw, HardwareOutcome::Active));
        }
        Err(NftError::HardwareRefused { .. }) => {}
        Err(e) => return Err(e),
    }
    // Shaping is found on flowtable devices and on the configured and L3 devices they
    // stand for (SQM on pppoe-wan shapes what `wan` carries).
    let mut refused: Vec<(String, String)> = d
        .shaped
        .iter()
        .map(|(dev, what)| (dev.clone(), shaped_reason(what)))
        .collect();
    for (dev, key) in devices
        .iter()
        .zip(keys)
        .filter(|(x, _)| !d.shaped.contains_key(*x))
    {
        let verdict = match verdicts.get(&key) {
            Some(v) => v.clone(),
            None => {
                let v = probe_hardware(k, dev)?;
                verdicts.insert(key, v.clone());
                v
            }
        };
        if let Some(why) = verdict {
            refused.push((dev.clone(), why));
        }
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
    Ok((all_sw, HardwareOutcome::Fallback { refused, accepted }))
}

/// One device alone with `flags offload`: `None` if its driver takes it, else why not
/// (with the driver's ethtool hint).
fn probe_hardware<K: Kernel>(k: &mut K, dev: &str) -> Result<Option<String>, NftError> {
    let why = match k.probe(dev, true) {
        Ok(()) => return Ok(None),
        Err(NftError::HardwareRefused { reason, .. }) => short_reason(&reason),
        // Gone since the trial: the caller plans again with the devices that exist.
        Err(e @ NftError::DeviceGone { .. }) => return Err(e),
        Err(e) => e.to_string(),
    };
    Ok(Some(match k.hint(dev) {
        Some(h) => format!("{why}; {h}"),
        None => why,
    }))
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
