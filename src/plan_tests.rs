//! Golden tests: `plan` output for several configs, compared as nft text.

use super::*;
use crate::config::parse_toml;

fn render(toml: &str, links: &[&str]) -> String {
    let cfg = parse_toml(toml).unwrap();
    plan(&cfg, &LinkSnapshot::from_names(links.iter().copied()))
        .unwrap()
        .to_string()
}

/// Compares against tests/golden/NAME.nft; `OFFLOADD_BLESS=1` rewrites the file.
fn golden(name: &str, actual: &str) {
    let path = format!("{}/tests/golden/{name}.nft", env!("CARGO_MANIFEST_DIR"));
    if std::env::var_os("OFFLOADD_BLESS").is_some() {
        std::fs::write(&path, actual).unwrap();
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    assert_eq!(actual, expected, "plan output differs from {path}");
}

#[test]
fn minimal_two_devices() {
    let out = render(
        "[offload]\ndevices = [\"wan\", \"lan\"]\nhardware = \"off\"\n",
        &["lo", "lan", "wan"],
    );
    golden("minimal", &out);
}

#[test]
fn example_config_with_one_missing_device() {
    let cfg = parse_toml(include_str!("../config/offloadd.toml")).unwrap();
    let d = plan(&cfg, &LinkSnapshot::from_names(["lo", "eth0"])).unwrap();
    assert_eq!(d.missing, vec!["eth1".to_string()]);
    golden("example", &d.to_string());
}

#[test]
fn hardware_require_sets_flag_and_counter_off() {
    let out = render(
        "[offload]\ndevices = [\"eth0\"]\nhardware = \"require\"\ncounter = false\n",
        &["eth0"],
    );
    golden("hardware", &out);
}

#[test]
fn no_devices_present_gives_flowtable_without_devices() {
    let out = render("[offload]\ndevices = [\"ppp0\"]\n", &["lo"]);
    assert!(!out.contains("devices ="), "{out}");
    assert!(out.contains("flow add @ft"));
}

#[test]
fn ports_without_protocol_cover_tcp_and_udp() {
    let cfg = parse_toml("[[offload.exclude]]\ndport = [\"53\"]\n").unwrap();
    let d = plan(&cfg, &LinkSnapshot::default()).unwrap();
    let rules: Vec<String> = d.excludes.iter().map(|r| r.to_string()).collect();
    assert_eq!(
        rules,
        [
            "meta l4proto tcp ct original proto-dst 53 return",
            "meta l4proto udp ct original proto-dst 53 return"
        ]
    );
}

#[test]
fn mixed_families_skip_impossible_pairs() {
    let cfg = parse_toml(
        "[[offload.exclude]]\nsaddr = [\"198.18.0.0/15\", \"fd00::/8\"]\ndaddr = [\"198.18.1.1\"]\n",
    )
    .unwrap();
    let d = plan(&cfg, &LinkSnapshot::default()).unwrap();
    assert_eq!(d.excludes.len(), 1);
    assert_eq!(
        d.excludes[0].to_string(),
        "ct original ip saddr 198.18.0.0/15 ct original ip daddr 198.18.1.1 return"
    );
    let cfg =
        parse_toml("\n[[offload.exclude]]\nsaddr = [\"fd00::1\"]\ndaddr = [\"198.18.1.1\"]\n")
            .unwrap();
    assert_eq!(
        plan(&cfg, &LinkSnapshot::default()),
        Err(PlanError::Impossible { line: 2 })
    );
}

#[test]
fn too_many_rules_is_refused_with_line() {
    let ports: Vec<String> = (1..=600).map(|p| format!("\"{p}\"")).collect();
    let cfg = parse_toml(&format!(
        "[[offload.exclude]]\nl4proto = \"udp\"\ndport = [{}]\n",
        ports.join(",")
    ))
    .unwrap();
    let e = plan(&cfg, &LinkSnapshot::default()).unwrap_err();
    assert_eq!(e.line(), 1);
}

#[test]
fn equal_configs_plan_equal_and_changes_show() {
    let links = LinkSnapshot::from_names(["a", "b"]);
    let c1 = parse_toml("[offload]\ndevices = [\"a\", \"b\"]\n").unwrap();
    let c2 = parse_toml("[offload]\ndevices = [\"b\", \"a\"]\n").unwrap();
    assert_eq!(plan(&c1, &links), plan(&c2, &links));
    let c3 = parse_toml("[offload]\ndevices = [\"a\"]\n").unwrap();
    assert_ne!(plan(&c1, &links), plan(&c3, &links));
}

#[test]
fn without_flowtable_drops_flow_add() {
    let cfg = parse_toml("[offload]\ndevices = [\"a\"]\n").unwrap();
    let d = plan(&cfg, &LinkSnapshot::from_names(["a"]))
        .unwrap()
        .without_flowtable();
    let out = d.to_string();
    assert!(
        !out.contains("flowtable") && !out.contains("flow add"),
        "{out}"
    );
}

fn bridge_links() -> LinkSnapshot {
    let mut links = LinkSnapshot::from_names(["br-lan", "lan1", "lan2", "eth0", "eth0.2"]);
    links.set_lowers("br-lan", vec!["lan1".into(), "lan2".into()]);
    links.set_lowers("eth0.2", vec!["eth0".into()]);
    links
}

#[test]
fn hardware_names_bridge_ports_and_vlan_parents_software_the_upper_devices() {
    let toml =
        |hw: &str| format!("[offload]\ndevices = [\"br-lan\", \"eth0.2\"]\nhardware = \"{hw}\"\n");
    let hw = plan(&parse_toml(&toml("auto")).unwrap(), &bridge_links()).unwrap();
    let ft = hw.flowtable.as_ref().unwrap();
    assert_eq!(
        ft.devices.iter().map(String::as_str).collect::<Vec<_>>(),
        ["eth0", "lan1", "lan2"]
    );
    assert_eq!(hw.via["br-lan"], ["lan1", "lan2"]);
    assert_eq!(hw.via["eth0.2"], ["eth0"]);

    let sw = plan(&parse_toml(&toml("off")).unwrap(), &bridge_links()).unwrap();
    let ft = sw.flowtable.as_ref().unwrap();
    assert_eq!(
        ft.devices.iter().map(String::as_str).collect::<Vec<_>>(),
        ["br-lan", "eth0.2"]
    );
    assert!(sw.via.is_empty());
}

#[test]
fn split_layout_limits_the_hardware_rule_to_its_devices() {
    let cfg =
        parse_toml("[offload]\ndevices = [\"br-lan\", \"wan\"]\nhardware = \"auto\"\n").unwrap();
    let mut links = LinkSnapshot::from_names(["br-lan", "lan1", "lan2", "wan"]);
    links.set_lowers("br-lan", vec!["lan1".into(), "lan2".into()]);
    let d = plan(&cfg, &links).unwrap();
    let refused: BTreeSet<String> = ["wan".to_string()].into();
    golden("split", &d.split(&refused).to_string());
}

#[test]
fn device_only_differences_are_recognised() {
    let cfg = parse_toml("[offload]\ndevices = [\"a\", \"b\"]\nhardware = \"off\"\n").unwrap();
    let one = plan(&cfg, &LinkSnapshot::from_names(["a"])).unwrap();
    let two = plan(&cfg, &LinkSnapshot::from_names(["a", "b"])).unwrap();
    assert!(one.differs_only_in_devices(&two));
    let counter_off =
        parse_toml("[offload]\ndevices = [\"a\", \"b\"]\nhardware = \"off\"\ncounter = false\n")
            .unwrap();
    let other = plan(&counter_off, &LinkSnapshot::from_names(["a", "b"])).unwrap();
    assert!(!two.differs_only_in_devices(&other), "flags differ");
    // In the split layout ft's devices are in a rule: changing them is not hooks only.
    let sw: BTreeSet<String> = ["b".to_string()].into();
    let split = two.split(&sw);
    let mut more = split.clone();
    more.flowtable.as_mut().unwrap().devices.insert("c".into());
    assert!(!split.differs_only_in_devices(&more));
    let mut rest = split.clone();
    rest.fallback.as_mut().unwrap().devices.insert("c".into());
    assert!(split.differs_only_in_devices(&rest));
}

#[test]
fn device_exclusions_follow_the_connection_in_both_directions() {
    let cfg = parse_toml(
        "[[offload.exclude]]\nmark = \"0x10/0xff\"\niif = [\"wlan0\"]\noif = [\"wan\"]\n",
    )
    .unwrap();
    let d = plan(&cfg, &LinkSnapshot::default()).unwrap();
    let rules: Vec<String> = d.excludes.iter().map(|r| r.to_string()).collect();
    assert_eq!(
        rules,
        [
            "ct mark and 0xff == 0x10 ct direction original iifname \"wlan0\" oifname \"wan\" return",
            "ct mark and 0xff == 0x10 ct direction reply iifname \"wan\" oifname \"wlan0\" return",
        ]
    );
    let only_mark = parse_toml("[[offload.exclude]]\nmark = \"7\"\n").unwrap();
    let d = plan(&only_mark, &LinkSnapshot::default()).unwrap();
    assert_eq!(d.excludes[0].to_string(), "ct mark 0x7 return");
}
