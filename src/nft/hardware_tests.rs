//! The hardware decision and device isolation against a fake kernel.

use super::*;
use crate::link::LinkSnapshot;
use crate::nft::batch::Object;
use crate::nft::explain;
use crate::plan::plan;
use crate::plan::Inputs;
use std::collections::BTreeSet;

/// Accepts hardware only on `hw_ok`, refuses `sw_bad` outright; records what happens.
#[derive(Default)]
struct Fake {
    hw_ok: BTreeSet<String>,
    sw_bad: BTreeSet<String>,
    applied: Vec<Desired>,
    calls: usize,
    /// Devices probed, in order.
    probed: Vec<String>,
    /// ifindex per device (1 when not listed).
    ifindex: std::collections::HashMap<String, u32>,
    /// Devices deleted right after the next commit.
    vanish: Vec<String>,
    /// Another program changed our table since the last apply.
    tampered: bool,
    /// The next commit deletes flowtables of ours (a flush or a replace).
    flushes: bool,
}

fn refusal(devices: Vec<String>, hw: bool, errno: i32) -> NftError {
    explain(
        &Object::Flowtable {
            name: "ft".into(),
            devices,
            hw_offload: hw,
        },
        errno,
    )
}

impl Kernel for Fake {
    fn apply(&mut self, d: &Desired) -> Result<Change, NftError> {
        self.trial(d)?;
        self.applied.push(d.clone());
        self.tampered = false;
        Ok(Change {
            changed: true,
            flushed: std::mem::take(&mut self.flushes),
            vanished: std::mem::take(&mut self.vanish),
        })
    }
    fn holds(&mut self, d: &Desired) -> Result<bool, NftError> {
        Ok(!self.tampered && self.applied.last() == Some(d))
    }
    fn ifindex(&mut self, device: &str) -> Option<u32> {
        Some(*self.ifindex.get(device).unwrap_or(&1))
    }
    fn trial(&mut self, d: &Desired) -> Result<(), NftError> {
        self.calls += 1;
        for (_, ft) in d.flowtables() {
            let devices: Vec<String> = ft.devices.iter().cloned().collect();
            if ft.devices.iter().any(|x| self.sw_bad.contains(x)) {
                return Err(refusal(devices, ft.hw_offload, libc::EINVAL));
            }
            if ft.hw_offload && !ft.devices.is_subset(&self.hw_ok) {
                return Err(refusal(devices, true, libc::EOPNOTSUPP));
            }
        }
        Ok(())
    }
    fn probe(&mut self, device: &str, hw: bool) -> Result<(), NftError> {
        self.calls += 1;
        self.probed.push(device.into());
        if self.sw_bad.contains(device) {
            Err(refusal(vec![device.into()], hw, libc::EINVAL))
        } else if hw && !self.hw_ok.contains(device) {
            Err(refusal(vec![device.into()], true, libc::EOPNOTSUPP))
        } else {
            Ok(())
        }
    }
    fn hint(&mut self, device: &str) -> Option<String> {
        (device == "veth0").then(|| "ethtool: hw-tc-offload off [fixed]".into())
    }
}

fn set(v: &[&str]) -> BTreeSet<String> {
    v.iter().map(|s| s.to_string()).collect()
}

fn setup(hw: &str, devices: &[&str], hw_ok: &[&str]) -> (Fake, Desired, Hardware) {
    let list: Vec<String> = devices.iter().map(|d| format!("\"{d}\"")).collect();
    let cfg = crate::config::parse_toml(&format!(
        "[offload]\ndevices = [{}]\nhardware = \"{hw}\"\n",
        list.join(", ")
    ))
    .unwrap();
    let d = plan(
        &cfg,
        &Inputs::links(&LinkSnapshot::from_names(devices.iter().copied())),
    )
    .map(|p| p.ruleset)
    .unwrap();
    let fake = Fake {
        hw_ok: set(hw_ok),
        ..Fake::default()
    };
    (fake, d, cfg.offload.hardware)
}

#[test]
fn auto_with_one_refusal_puts_every_device_on_software_and_names_both() {
    let (mut k, d, hw) = setup("auto", &["eth0", "veth0"], &["eth0"]);
    let o = apply_with_hardware(&mut k, &d, hw, &mut Memory::default()).unwrap();
    let ft = o.desired.flowtable.as_ref().unwrap();
    assert!(!ft.hw_offload);
    assert_eq!(ft.devices, set(&["eth0", "veth0"]));
    assert_eq!(o.desired.flowtables().count(), 1);
    match &o.hardware {
        HardwareOutcome::Fallback { refused, accepted } => {
            assert_eq!(accepted, &["eth0"]);
            assert_eq!(refused.len(), 1);
            assert_eq!(refused[0].0, "veth0");
            let why = &refused[0].1;
            assert!(why.contains("TC_SETUP_FT (EOPNOTSUPP)"), "{why}");
            assert!(why.contains("hw-tc-offload off [fixed]"), "{why}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(k.applied.len(), 1);
    let text = o.hardware.to_string();
    assert!(
        text.contains("refused by veth0; eth0 would take it"),
        "{text}"
    );
}

#[test]
fn auto_with_no_device_accepting_is_one_software_flowtable() {
    let (mut k, d, hw) = setup("auto", &["eth0", "veth0"], &[]);
    let o = apply_with_hardware(&mut k, &d, hw, &mut Memory::default()).unwrap();
    let ft = o.desired.flowtable.as_ref().unwrap();
    assert!(!ft.hw_offload);
    assert_eq!(ft.devices, set(&["eth0", "veth0"]));
    assert!(
        matches!(&o.hardware, HardwareOutcome::Fallback { refused, accepted } if refused.len() == 2 && accepted.is_empty())
    );
}

#[test]
fn a_shaped_device_stays_on_software_without_a_trial() {
    let (mut k, mut d, hw) = setup("auto", &["eth0", "wan"], &["eth0", "wan"]);
    d.shaped.insert("wan".into(), "cake qdisc on wan".into());
    let o = apply_with_hardware(&mut k, &d, hw, &mut Memory::default()).unwrap();
    let ft = o.desired.flowtable.as_ref().unwrap();
    assert!(!ft.hw_offload);
    assert_eq!(ft.devices, set(&["eth0", "wan"]));
    match &o.hardware {
        HardwareOutcome::Fallback { refused, .. } => {
            assert_eq!(refused[0].0, "wan");
            assert!(
                refused[0].1.starts_with("shaped (cake qdisc on wan)"),
                "{}",
                refused[0].1
            );
        }
        other => panic!("{other:?}"),
    }
    // wan accepts hardware, but was never probed: only eth0's probe and the apply ran.
    assert_eq!(k.calls, 2);
}

#[test]
fn auto_keeps_hardware_when_all_accept() {
    let (mut k, d, hw) = setup("auto", &["eth0", "veth0"], &["eth0", "veth0"]);
    let o = apply_with_hardware(&mut k, &d, hw, &mut Memory::default()).unwrap();
    assert_eq!(o.hardware, HardwareOutcome::Active);
    assert!(o.desired.flowtable.unwrap().hw_offload);
}

#[test]
fn require_fails_with_device_and_applies_nothing() {
    let (mut k, d, hw) = setup("require", &["eth0", "veth0"], &["eth0"]);
    let e = apply_with_hardware(&mut k, &d, hw, &mut Memory::default()).unwrap_err();
    match &e {
        NftError::HardwareRefused { devices, .. } => assert_eq!(devices, &["veth0"]),
        other => panic!("{other:?}"),
    }
    let text = e.to_string();
    assert!(
        text.contains("veth0: driver does not support TC_SETUP_FT") && text.contains("require"),
        "{text}"
    );
    assert!(k.applied.is_empty());
}

#[test]
fn off_never_tries() {
    let (mut k, d, hw) = setup("off", &["eth0", "veth0"], &[]);
    let o = apply_with_hardware(&mut k, &d, hw, &mut Memory::default()).unwrap();
    assert_eq!(o.hardware, HardwareOutcome::Off);
    assert!(!o.desired.flowtable.unwrap().hw_offload);
    // Only the apply's own validation ran: no hardware trial, no probes.
    assert_eq!(k.calls, 1);
}

#[test]
fn a_device_the_kernel_refuses_is_left_out_and_named() {
    let (mut k, d, hw) = setup("off", &["eth0", "ppp0", "veth0"], &[]);
    k.sw_bad = set(&["ppp0"]);
    let o = apply_with_hardware(&mut k, &d, hw, &mut Memory::default()).unwrap();
    assert_eq!(
        o.desired.flowtable.unwrap().devices,
        set(&["eth0", "veth0"])
    );
    assert_eq!(o.left_out.len(), 1);
    assert_eq!(o.left_out[0].0, "ppp0");
    assert!(o.left_out[0].1.contains("EINVAL"), "{}", o.left_out[0].1);
}

#[test]
fn the_same_plan_again_sends_nothing_and_probes_nothing() {
    let (mut k, d, hw) = setup("auto", &["veth0", "eth1"], &["eth1"]);
    let mut mem = Memory::default();
    let first = apply_with_hardware(&mut k, &d, hw, &mut mem).unwrap();
    assert!(first.changed);
    let (calls, applies) = (k.calls, k.applied.len());
    let again = apply_with_hardware(&mut k, &d, hw, &mut mem).unwrap();
    assert!(!again.changed);
    assert_eq!(
        (k.calls, k.applied.len()),
        (calls, applies),
        "no trial, probe or apply"
    );
    assert_eq!(again.hardware, first.hardware);
    // Someone changed our table: the same plan is applied again.
    k.tampered = true;
    assert!(
        apply_with_hardware(&mut k, &d, hw, &mut mem)
            .unwrap()
            .changed
    );
}

#[test]
fn hardware_verdicts_are_kept_per_device_and_ifindex() {
    let (mut k, d, hw) = setup("auto", &["veth0", "eth1"], &["eth1"]);
    let mut mem = Memory::default();
    apply_with_hardware(&mut k, &d, hw, &mut mem).unwrap();
    assert_eq!(k.probed, ["eth1", "veth0"], "each probed once");
    // A new device appears: only it is probed.
    let (_, d2, _) = setup("auto", &["veth0", "eth1", "veth1"], &[]);
    k.probed.clear();
    let o = apply_with_hardware(&mut k, &d2, hw, &mut mem).unwrap();
    assert_eq!(k.probed, ["veth1"]);
    let HardwareOutcome::Fallback { accepted, .. } = &o.hardware else {
        panic!("{:?}", o.hardware)
    };
    assert_eq!(accepted, &["eth1"], "eth1's verdict came from memory");
    // veth0 deleted and created again: a new ifindex, a new device, probed again.
    k.ifindex.insert("veth0".into(), 9);
    k.probed.clear();
    apply_with_hardware(&mut k, &d, hw, &mut mem).unwrap();
    assert_eq!(k.probed, ["veth0"]);
    // A reload forgets everything.
    mem.forget();
    k.probed.clear();
    apply_with_hardware(&mut k, &d, hw, &mut mem).unwrap();
    assert_eq!(k.probed, ["eth1", "veth0"]);
}

#[test]
fn a_device_gone_after_the_commit_is_reported_not_failed() {
    let (mut k, d, hw) = setup("off", &["eth0", "eth1"], &[]);
    let mut mem = Memory::default();
    k.vanish = vec!["eth1".into()];
    let o = apply_with_hardware(&mut k, &d, hw, &mut mem).unwrap();
    assert!(o.changed);
    assert_eq!(o.vanished, ["eth1"]);
    let devices: Vec<&str> = o.desired.devices().collect();
    assert_eq!(devices, ["eth0"], "what the kernel accepted");
    // Not remembered as applied: the next plan (without eth1) is applied for real.
    let (_, d1, _) = setup("off", &["eth0"], &[]);
    assert!(
        apply_with_hardware(&mut k, &d1, hw, &mut mem)
            .unwrap()
            .changed
    );
}

/// A bridge of DSA-like ports and Wi-Fi: hardware is tried on the ports, never on the
/// bridge; all accept -> hardware on the ports; the Wi-Fi refuses -> software on the
/// configured devices (br-lan, wan), with the refusal named.
#[test]
fn hardware_is_tried_on_the_ports_and_falls_back_to_the_configured_devices() {
    let cfg = crate::config::parse_toml(
        "[offload]\ndevices = [\"br-lan\", \"wan\"]\nhardware = \"auto\"\n",
    )
    .unwrap();
    let mut links = LinkSnapshot::from_names(["br-lan", "lan1", "lan2", "phy0-ap0", "wan"]);
    links.set_lowers(
        "br-lan",
        vec!["lan1".into(), "lan2".into(), "phy0-ap0".into()],
    );
    let d = plan(&cfg, &Inputs::links(&links))
        .map(|p| p.ruleset)
        .unwrap();

    let mut all = Fake {
        hw_ok: set(&["lan1", "lan2", "phy0-ap0", "wan"]),
        ..Fake::default()
    };
    let o =
        apply_with_hardware(&mut all, &d, cfg.offload.hardware, &mut Memory::default()).unwrap();
    assert_eq!(o.hardware, HardwareOutcome::Active);
    let ft = o.desired.flowtable.as_ref().unwrap();
    assert_eq!(ft.devices, set(&["lan1", "lan2", "phy0-ap0", "wan"]));

    let mut wifi_refuses = Fake {
        hw_ok: set(&["lan1", "lan2", "wan"]),
        ..Fake::default()
    };
    let o = apply_with_hardware(
        &mut wifi_refuses,
        &d,
        cfg.offload.hardware,
        &mut Memory::default(),
    )
    .unwrap();
    assert_eq!(wifi_refuses.probed, ["lan1", "lan2", "phy0-ap0", "wan"]);
    let ft = o.desired.flowtable.as_ref().unwrap();
    assert!(!ft.hw_offload);
    assert_eq!(ft.devices, set(&["br-lan", "wan"]));
    match &o.hardware {
        HardwareOutcome::Fallback { refused, accepted } => {
            assert_eq!(
                refused.iter().map(|(d, _)| d.as_str()).collect::<Vec<_>>(),
                ["phy0-ap0"]
            );
            assert_eq!(accepted, &["lan1", "lan2", "wan"]);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn the_outcome_says_what_the_commit_did() {
    let (mut k, d, hw) = setup("off", &["eth0"], &[]);
    let mut mem = Memory::default();
    k.flushes = true;
    let o = apply_with_hardware(&mut k, &d, hw, &mut mem).unwrap();
    assert!(o.changed && o.flushed, "{o:?}");
    let again = apply_with_hardware(&mut k, &d, hw, &mut mem).unwrap();
    assert!(!again.changed && !again.flushed, "{again:?}");
}
