//! The status as the daemon builds it from a real apply outcome, rendered as `status`
//! prints it.

use std::time::Duration;

use super::*;
use crate::link::LinkSnapshot;
use crate::plan::Inputs;

const REASON: &str = "driver does not support TC_SETUP_FT (EOPNOTSUPP)";

fn applied_with_refusal() -> (Config, Applied) {
    let cfg = crate::config::parse_toml(
        "[offload]\ndevices = [\"lan0\", \"wan0\", \"wlan0\"]\nhardware = \"auto\"\n",
    )
    .unwrap();
    let desired = crate::plan::plan(
        &cfg,
        &Inputs::links(&LinkSnapshot::from_names(["lan0", "wan0"])),
    )
    .map(|p| p.ruleset)
    .unwrap();
    let a = Applied {
        desired,
        hardware: HardwareOutcome::Fallback {
            refused: vec![("lan0".into(), REASON.into())],
            accepted: vec!["wan0".into()],
        },
        changed: true,
        flushed: false,
        vanished: vec![],
        took: Duration::from_millis(12),
        left_out: vec![],
        owner: true,
        priority_why: "after every other forward chain".into(),
    };
    (cfg, a)
}

#[test]
fn a_hardware_refusal_is_shown_once_at_its_device() {
    let (cfg, a) = applied_with_refusal();
    let mut st = initial(&cfg, "/etc/offloadd/offloadd.toml");
    applied(&mut st, &cfg, &a);
    let text = crate::report::status_text(&st);
    assert_eq!(text.matches(REASON).count(), 1, "{text}");
    let lan0 = text.lines().find(|l| l.contains("lan0")).unwrap();
    assert!(lan0.contains(REASON), "{text}");
    assert!(
        text.contains("wlan0") && text.contains("does not exist"),
        "the missing device is still a warning: {text}"
    );
    assert_eq!(
        st.hardware.refused,
        [Refusal {
            device: "lan0".into(),
            reason: REASON.into()
        }],
        "metrics read the structured refusal"
    );
}

#[test]
fn repeated_failed_reloads_keep_one_warning_the_last() {
    let (cfg, _) = applied_with_refusal();
    let mut st = initial(&cfg, "/etc/offloadd/offloadd.toml");
    for n in 1..=3 {
        failed(
            &mut st,
            &anyhow::anyhow!("offloadd.toml:{n}: bad"),
            Duration::from_millis(1),
        );
    }
    assert_eq!(st.apply_failures, 3);
    assert_eq!(
        st.warnings,
        ["last apply failed: offloadd.toml:3: bad"],
        "{:?}",
        st.warnings
    );
}
