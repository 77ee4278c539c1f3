//! The hardware decision against a fake kernel.

use super::*;
use crate::link::LinkSnapshot;
use crate::plan::plan;
use std::collections::BTreeSet;

/// Accepts hardware only on the devices in `hw_ok`; records what was applied.
struct Fake {
    hw_ok: BTreeSet<String>,
    applied: Vec<Desired>,
}

fn refused(devices: Vec<String>) -> NftError {
    explain(
        &Object::Flowtable {
            name: "ft".into(),
            devices,
            hw_offload: true,
        },
        libc::EOPNOTSUPP,
    )
}

impl Kernel for Fake {
    fn apply(&mut self, d: &Desired) -> Result<bool, NftError> {
        self.trial(d)?;
        self.applied.push(d.clone());
        Ok(true)
    }
    fn trial(&mut self, d: &Desired) -> Result<(), NftError> {
        let ft = d.flowtable.as_ref().unwrap();
        if ft.hw_offload && !ft.devices.is_subset(&self.hw_ok) {
            return Err(refused(ft.devices.iter().cloned().collect()));
        }
        Ok(())
    }
    fn probe_hw(&mut self, device: &str) -> Result<(), NftError> {
        if self.hw_ok.contains(device) {
            Ok(())
        } else {
            Err(refused(vec![device.into()]))
        }
    }
}

fn setup(hw: &str, hw_ok: &[&str]) -> (Fake, Desired, Hardware) {
    let cfg = crate::config::parse_toml(&format!(
        "[offload]\ndevices = [\"eth0\", \"veth0\"]\nhardware = \"{hw}\"\n"
    ))
    .unwrap();
    let d = plan(&cfg, &LinkSnapshot::from_names(["eth0", "veth0"])).unwrap();
    (
        Fake {
            hw_ok: hw_ok.iter().map(|s| s.to_string()).collect(),
            applied: vec![],
        },
        d,
        cfg.offload.hardware,
    )
}

#[test]
fn auto_falls_back_and_names_the_refusing_device() {
    let (mut k, d, hw) = setup("auto", &["eth0"]);
    let (_, applied, outcome) = apply_with_hardware(&mut k, &d, hw).unwrap();
    assert!(!applied.flowtable.unwrap().hw_offload);
    match outcome {
        HardwareOutcome::Fallback { refused } => {
            assert_eq!(refused.len(), 1);
            assert_eq!(refused[0].0, "veth0");
            assert!(
                refused[0].1.contains("TC_SETUP_FT (EOPNOTSUPP)"),
                "{}",
                refused[0].1
            );
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(k.applied.len(), 1);
}

#[test]
fn auto_keeps_hardware_when_all_accept() {
    let (mut k, d, hw) = setup("auto", &["eth0", "veth0"]);
    let (_, applied, outcome) = apply_with_hardware(&mut k, &d, hw).unwrap();
    assert_eq!(outcome, HardwareOutcome::Active);
    assert!(applied.flowtable.unwrap().hw_offload);
}

#[test]
fn require_fails_with_device_and_applies_nothing() {
    let (mut k, d, hw) = setup("require", &["eth0"]);
    let e = apply_with_hardware(&mut k, &d, hw).unwrap_err().to_string();
    assert!(e.contains("veth0") && e.contains("require"), "{e}");
    assert!(!e.contains("eth0,"), "eth0 accepted hardware: {e}");
    assert!(k.applied.is_empty());
}

#[test]
fn off_never_tries() {
    let (mut k, d, hw) = setup("off", &[]);
    let (_, applied, outcome) = apply_with_hardware(&mut k, &d, hw).unwrap();
    assert_eq!(outcome, HardwareOutcome::Off);
    assert!(!applied.flowtable.unwrap().hw_offload);
}
