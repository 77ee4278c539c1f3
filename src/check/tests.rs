//! Each finding of `check`, from facts made by hand.

use super::*;
use crate::config::parse_toml;
use crate::nft::Features;
use crate::plan::Inputs;

fn cfg(toml: &str) -> Config {
    parse_toml(toml).unwrap()
}

fn base() -> Facts {
    let c = cfg("[offload]\ndevices = [\"eth0\", \"ppp0\"]\nhardware = \"auto\"\n");
    let d = plan(&c, &Inputs::links(&LinkSnapshot::from_names(["eth0"])))
        .map(|p| p.ruleset)
        .unwrap();
    Facts {
        source: "/etc/offloadd/offloadd.toml".into(),
        config: Some(Ok(c)),
        plan: Some(Ok(d)),
        trial: Some(Ok(())),
        modules: MODULES.iter().map(|m| (*m, true)).collect(),
        ip_forward: Some(true),
        conntrack_acct: Some(true),
        ..Facts::default()
    }
}

fn find<'a>(all: &'a [Finding], text: &str) -> &'a Finding {
    all.iter()
        .find(|f| f.what.contains(text))
        .unwrap_or_else(|| panic!("no finding with {text:?} in {all:#?}"))
}

#[test]
fn healthy_router_passes_with_the_missing_device_and_local_traffic_notes() {
    let x = base();
    let all = findings(&x);
    assert_eq!(exit_code(&x, &all), 0);
    assert_eq!(find(&all, "config").level, Level::Ok);
    assert_eq!(find(&all, "flowtable support").level, Level::Ok);
    let missing = find(&all, "device ppp0 does not exist");
    assert_eq!(missing.level, Level::Warn);
    assert!(missing
        .next
        .as_deref()
        .unwrap()
        .contains("added when it appears"));
    assert!(find(&all, "speed test run on the router itself")
        .next
        .is_some());
}

#[test]
fn no_flowtables_fails_with_the_module_hint() {
    let mut x = base();
    x.no_flowtables = true;
    x.trial = Some(Err(crate::nft::NO_FLOWTABLE_SUPPORT.into()));
    x.modules = MODULES.iter().map(|m| (*m, !m.contains("flow"))).collect();
    let all = findings(&x);
    assert_eq!(exit_code(&x, &all), 1);
    let t = find(&all, "flowtable support");
    assert_eq!(t.level, Level::Fail);
    assert!(t.what.contains("kmod-nft-offload"), "{}", t.what);
    assert_eq!(
        find(&all, "nft_flow_offload is not loaded").level,
        Level::Warn
    );
}

#[test]
fn bad_config_fails_and_says_where() {
    let mut x = base();
    x.config = Some(Err(
        "/etc/offloadd/offloadd.toml:3: hardware \"x\" is not valid".into(),
    ));
    x.plan = None;
    let all = findings(&x);
    assert_eq!(exit_code(&x, &all), 1);
    assert!(find(&all, "offloadd.toml:3").level == Level::Fail);
}

#[test]
fn hardware_refusal_warns_under_auto_and_fails_under_require() {
    let mut x = base();
    x.hardware = vec![
        (
            "eth0".into(),
            Err("driver does not support TC_SETUP_FT (EOPNOTSUPP)".into()),
        ),
        ("eth1".into(), Ok(())),
    ];
    let all = findings(&x);
    assert_eq!(find(&all, "eth0 refuses").level, Level::Warn);
    assert_eq!(find(&all, "eth1 accepts").level, Level::Ok);
    x.config = Some(Ok(cfg(
        "[offload]\ndevices = [\"eth0\"]\nhardware = \"require\"\n",
    )));
    let all = findings(&x);
    assert_eq!(find(&all, "eth0 refuses").level, Level::Fail);
    assert_eq!(exit_code(&x, &all), 1);
}

#[test]
fn duplicate_warns_in_manage_and_is_fine_in_auto() {
    let mut x = base();
    x.duplicates = vec!["flowtable ft in table inet fw4 covers eth0".into()];
    let observed = find(&findings(&x), "fw4").clone();
    assert_eq!(observed.level, Level::Ok);
    // fw4's one flowtable, observed, is not "two flowtables on one device".
    assert!(!observed.what.contains("two flowtables"), "{observed:?}");
    x.config = Some(Ok(cfg(
        "mode = \"manage\"\n[offload]\ndevices = [\"eth0\"]\n",
    )));
    let dup = find(&findings(&x), "duplicate").clone();
    assert_eq!(dup.level, Level::Warn);
    assert!(dup.what.contains("two flowtables on one device"), "{dup:?}");
}

#[test]
fn shaped_device_warns_and_says_it_stays_on_software() {
    let mut x = base();
    x.shaped.insert("eth0".into(), "cake qdisc on eth0".into());
    let all = findings(&x);
    let s = find(&all, "eth0 is shaped (cake qdisc on eth0)");
    assert_eq!(s.level, Level::Warn);
    assert!(
        s.what.contains("keeps eth0 on software offload"),
        "{}",
        s.what
    );
    x.config = Some(Ok(cfg(
        "[offload]\ndevices = [\"eth0\"]\nhardware = \"off\"\n",
    )));
    assert!(find(&findings(&x), "eth0 is shaped")
        .what
        .contains("software offload keeps the shaping"));
}

#[test]
fn forwarding_off_and_accounting_off_warn() {
    let mut x = base();
    x.ip_forward = Some(false);
    x.conntrack_acct = Some(false);
    let all = findings(&x);
    assert_eq!(find(&all, "ip_forward is 0").level, Level::Warn);
    assert_eq!(find(&all, "nf_conntrack_acct is 0").level, Level::Warn);
    assert_eq!(exit_code(&x, &all), 0);
}

#[test]
fn no_permission_means_could_not_run() {
    let mut x = base();
    x.trial = None;
    x.denied = Some("permission denied".into());
    let all = findings(&x);
    assert_eq!(exit_code(&x, &all), 2);
    assert!(find(&all, "cannot talk to nf_tables")
        .next
        .as_deref()
        .unwrap()
        .contains("root"));
}

#[test]
fn text_shows_levels_and_next_steps() {
    let x = base();
    let t = text(&findings(&x));
    assert!(
        t.contains("WARN device ppp0 does not exist now\n     -> "),
        "{t}"
    );
    assert!(
        t.starts_with("ok   config /etc/offloadd/offloadd.toml reads\n"),
        "{t}"
    );
}

#[test]
fn an_ignored_conntrack_status_filter_is_a_warning_with_its_cost() {
    let mut x = Facts {
        status_filter: Some(StatusFilter::Ignored {
            entries: 120_000,
            took_ms: 210.0,
        }),
        ..Facts::default()
    };
    let out = text(&findings(&x));
    assert!(
        out.contains("WARN conntrack: the kernel ignores the status filter of dumps (Linux < 5.15, e.g. RHEL 9): each resync reads the whole table (120000 entries took 210 ms now)"),
        "{out}"
    );
    x.status_filter = Some(StatusFilter::Works);
    assert!(text(&findings(&x)).contains("ok   conntrack: the kernel filters dumps by status"));
}

#[test]
fn no_configured_device_present_fails_and_names_the_devices_here() {
    let c = cfg("[offload]\ndevices = [\"eth0\", \"eth1\"]\n");
    let d = plan(
        &c,
        &Inputs::links(&LinkSnapshot::from_names(["ens1f0np0", "ens1f1np1"])),
    )
    .map(|p| p.ruleset)
    .unwrap();
    let mut x = base();
    x.config = Some(Ok(c));
    x.plan = Some(Ok(d));
    x.present = vec!["ens1f0np0".into(), "ens1f1np1".into()];
    let all = findings(&x);
    let none = find(&all, "no flowtable devices");
    assert_eq!(none.level, Level::Fail);
    assert!(
        none.what.contains("devices here: ens1f0np0, ens1f1np1"),
        "{}",
        none.what
    );
    assert!(none.next.as_deref().unwrap().contains("[offload] devices"));
    assert_eq!(exit_code(&x, &all), 1);
    // The packages' default config lists no devices: said as such.
    let c = cfg("[offload]\ndevices = []\n");
    x.plan = Some(Ok(plan(
        &c,
        &Inputs::links(&LinkSnapshot::from_names(["ens1f0np0"])),
    )
    .map(|p| p.ruleset)
    .unwrap()));
    x.config = Some(Ok(c));
    let all = findings(&x);
    assert!(find(&all, "no flowtable devices").what.starts_with(
        "no flowtable devices: no devices are configured ([offload] devices is empty), so"
    ));
    // With one configured device present there is no such finding.
    let ok = findings(&base());
    assert!(
        !ok.iter().any(|f| f.what.contains("no flowtable devices")),
        "{ok:#?}"
    );
}

#[test]
fn kernel_features_are_listed_and_missing_ones_explained() {
    let mut x = base();
    x.features = Some(Ok(Features {
        flowtables: true,
        owner: Some(false),
        counter: Some(false),
        hooks_by_name: Some(false),
    }));
    let all = findings(&x);
    let line = find(&all, "kernel features");
    assert_eq!(
        line.what,
        "kernel features (each tried, nothing committed): flowtables yes, table owner flag no, flowtable counter no, hooks kept by name no"
    );
    assert_eq!(find(&all, "table owner flag: no").level, Level::Warn);
    assert_eq!(find(&all, "flowtable counter: no").level, Level::Warn);
    assert_eq!(find(&all, "hooks kept by name: no").level, Level::Ok);
    // Without flowtables only what could be tried is listed.
    x.features = Some(Ok(Features {
        flowtables: false,
        owner: Some(true),
        counter: None,
        hooks_by_name: None,
    }));
    let all = findings(&x);
    assert!(find(&all, "kernel features")
        .what
        .ends_with("flowtables no, table owner flag yes"));
}

#[test]
fn mlx5_in_legacy_mode_is_told_how_to_reach_switchdev() {
    let mut x = base();
    let port = |switchdev| crate::link::Mlx5Port {
        device: "eth0".into(),
        pci: "0000:3b:00.0".into(),
        switchdev: Some(switchdev),
        port_name: switchdev.then(|| "p0".into()),
    };
    x.mlx5 = vec![(port(false), Some(false))];
    let all = findings(&x);
    let w = find(&all, "mlx5 eth0");
    assert_eq!(w.level, Level::Warn);
    assert!(
        w.what
            .contains("devlink dev eswitch set pci/0000:3b:00.0 mode switchdev"),
        "{}",
        w.what
    );
    assert!(
        w.what.contains("ethtool -K eth0 hw-tc-offload on"),
        "{}",
        w.what
    );
    x.mlx5 = vec![(port(true), Some(true))];
    let all = findings(&x);
    assert_eq!(
        find(&all, "mlx5 eth0").what,
        "mlx5 eth0 (pci/0000:3b:00.0): eswitch in switchdev mode, representor p0, hw-tc-offload on"
    );
}

#[test]
fn a_refused_metrics_textfile_is_a_warning_with_the_daemon_s_reason() {
    let mut x = base();
    x.textfile = Some(Err(
        "/srv/prom/offloadd.prom: is a symbolic link, not a regular file".into(),
    ));
    let all = findings(&x);
    let w = find(&all, "metrics textfile");
    assert_eq!(w.level, Level::Warn);
    assert!(w.what.contains("symbolic link"), "{w:?}");
    assert_eq!(exit_code(&x, &all), 0, "metrics do not fail check");
}

#[test]
fn a_chain_at_the_top_priority_fails_check() {
    let mut x = base();
    x.priority_error = Some(
        crate::plan::choose_priority(
            None,
            &[crate::plan::ForwardChain {
                family: "inet".into(),
                table: "odd".into(),
                chain: "forward".into(),
                priority: i32::MAX,
            }],
        )
        .unwrap_err(),
    );
    let all = findings(&x);
    let e = find(&all, "forward chain priority");
    assert_eq!(e.level, Level::Fail);
    assert!(e.what.contains("inet odd forward"), "{e:?}");
    assert_eq!(exit_code(&x, &all), 1);
}
