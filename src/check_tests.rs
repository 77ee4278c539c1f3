//! Each finding of `check`, from facts made by hand.

use super::*;
use crate::config::parse_toml;

fn cfg(toml: &str) -> Config {
    parse_toml(toml).unwrap()
}

fn base() -> Facts {
    let c = cfg("[offload]\ndevices = [\"eth0\", \"ppp0\"]\nhardware = \"auto\"\n");
    let d = plan(&c, &LinkSnapshot::from_names(["eth0"])).unwrap();
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
    x.duplicates = vec!["flowtable ft in table inet fw4 also covers eth0".into()];
    assert_eq!(find(&findings(&x), "fw4").level, Level::Ok);
    x.config = Some(Ok(cfg(
        "mode = \"manage\"\n[offload]\ndevices = [\"eth0\"]\n",
    )));
    assert_eq!(find(&findings(&x), "duplicate").level, Level::Warn);
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
