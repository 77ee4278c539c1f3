//! Golden tests: `plan` output for several configs, compared as nft text.

use super::*;
use crate::config::parse_toml;
use crate::plan::Inputs;

fn render(toml: &str, links: &[&str]) -> String {
    let cfg = parse_toml(toml).unwrap();
    plan(
        &cfg,
        &Inputs::links(&LinkSnapshot::from_names(links.iter().copied())),
    )
    .map(|p| p.ruleset)
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
    let d = plan(
        &cfg,
        &Inputs::links(&LinkSnapshot::from_names(["lo", "eth0"])),
    )
    .map(|p| p.ruleset)
    .unwrap();
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
    let d = plan(&cfg, &Inputs::links(&LinkSnapshot::default()))
        .map(|p| p.ruleset)
        .unwrap();
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
    let d = plan(&cfg, &Inputs::links(&LinkSnapshot::default()))
        .map(|p| p.ruleset)
        .unwrap();
    assert_eq!(d.excludes.len(), 1);
    assert_eq!(
        d.excludes[0].to_string(),
        "ct original ip saddr 198.18.0.0/15 ct original ip daddr 198.18.1.1 return"
    );
    let cfg =
        parse_toml("\n[[offload.exclude]]\nsaddr = [\"fd00::1\"]\ndaddr = [\"198.18.1.1\"]\n")
            .unwrap();
    assert_eq!(
        plan(&cfg, &Inputs::links(&LinkSnapshot::default())).map(|p| p.ruleset),
        Err(PlanError::Impossible { line: 2 })
    );
}

#[test]
fn too_many_rules_is_refused_with_line() {
    // 3 source ports by 200 destination ports: 600 rules, each list under its cap.
    let ports: Vec<String> = (1..=200).map(|p| format!("\"{p}\"")).collect();
    let cfg = parse_toml(&format!(
        "[[offload.exclude]]\nl4proto = \"udp\"\nsport = [\"1\", \"2\", \"3\"]\ndport = [{}]\n",
        ports.join(",")
    ))
    .unwrap();
    let e = plan(&cfg, &Inputs::links(&LinkSnapshot::default()))
        .map(|p| p.ruleset)
        .unwrap_err();
    assert_eq!(e.line(), 1);
    assert_eq!(
        e,
        PlanError::TooManyRules {
            line: 1,
            count: 600
        }
    );
}

#[test]
fn equal_configs_plan_equal_and_changes_show() {
    let links = LinkSnapshot::from_names(["a", "b"]);
    let c1 = parse_toml("[offload]\ndevices = [\"a\", \"b\"]\n").unwrap();
    let c2 = parse_toml("[offload]\ndevices = [\"b\", \"a\"]\n").unwrap();
    assert_eq!(
        plan(&c1, &Inputs::links(&links)).map(|p| p.ruleset),
        plan(&c2, &Inputs::links(&links)).map(|p| p.ruleset)
    );
    let c3 = parse_toml("[offload]\ndevices = [\"a\"]\n").unwrap();
    assert_ne!(
        plan(&c1, &Inputs::links(&links)).map(|p| p.ruleset),
        plan(&c3, &Inputs::links(&links)).map(|p| p.ruleset)
    );
}

#[test]
fn without_flowtable_drops_flow_add() {
    let cfg = parse_toml("[offload]\ndevices = [\"a\"]\n").unwrap();
    let d = plan(&cfg, &Inputs::links(&LinkSnapshot::from_names(["a"])))
        .map(|p| p.ruleset)
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
    let hw = plan(
        &parse_toml(&toml("auto")).unwrap(),
        &Inputs::links(&bridge_links()),
    )
    .map(|p| p.ruleset)
    .unwrap();
    let ft = hw.flowtable.as_ref().unwrap();
    assert_eq!(
        ft.devices.iter().map(String::as_str).collect::<Vec<_>>(),
        ["eth0", "lan1", "lan2"]
    );
    assert_eq!(hw.via["br-lan"], ["lan1", "lan2"]);
    assert_eq!(hw.via["eth0.2"], ["eth0"]);

    let sw = plan(
        &parse_toml(&toml("off")).unwrap(),
        &Inputs::links(&bridge_links()),
    )
    .map(|p| p.ruleset)
    .unwrap();
    let ft = sw.flowtable.as_ref().unwrap();
    assert_eq!(
        ft.devices.iter().map(String::as_str).collect::<Vec<_>>(),
        ["br-lan", "eth0.2"]
    );
    assert!(sw.via.is_empty());
}

/// A board: its fake sysfs and its UCI network/firewall, planned as the daemon plans.
fn board(name: &str, devs: &[crate::link::fake_sysfs::Dev], network: &str, hw: &str) -> Desired {
    use crate::config::{openwrt::from_uci, uci::parse_uci};
    let tree = crate::link::fake_sysfs::Tree::new(name, devs);
    let firewall = parse_uci(
        "config zone\n\toption name 'lan'\n\tlist network 'lan'\n\n\
         config zone\n\toption name 'wan'\n\tlist network 'wan'\n\tlist network 'wan6'\n\n\
         config zone\n\toption name 'vpn'\n\tlist network 'wg0'\n\n\
         config zone\n\toption name 'guest'\n\tlist network 'guest'\n",
    )
    .unwrap();
    let offloadd = parse_uci(&format!("config offload\n\toption hardware '{hw}'\n")).unwrap();
    let network = parse_uci(network).unwrap();
    let cfg = from_uci(Some(&offloadd), &firewall, Some(&network)).unwrap();
    let mut links = LinkSnapshot::from_names(crate::link::fake_sysfs::Tree::names(devs));
    let conduit_has_ppe = |d: &str| d == "eth0";
    for d in &cfg.offload.devices {
        if links.contains(d) {
            links.set_lowers(d, crate::link::lower_devices(&tree.0, d, &conduit_has_ppe));
        }
    }
    plan(&cfg, &Inputs::links(&links))
        .map(|p| p.ruleset)
        .unwrap()
}

const MT7621_NETWORK: &str =
    "config interface 'lan'\n\toption device 'br-lan'\n\toption proto 'static'\n\n\
config interface 'wan'\n\toption device 'wan.7'\n\toption proto 'pppoe'\n\n\
config interface 'wan6'\n\toption device '@wan'\n\toption proto 'dhcpv6'\n";

const FILOGIC_NETWORK: &str =
    "config interface 'lan'\n\toption device 'br-lan'\n\toption proto 'static'\n\n\
config interface 'wan'\n\toption device 'eth1'\n\toption proto 'dhcp'\n\n\
config interface 'wan6'\n\toption device 'eth1'\n\toption proto 'dhcpv6'\n";

const X86_NETWORK: &str =
    "config interface 'lan'\n\toption device 'br-lan'\n\toption proto 'static'\n\n\
config interface 'wan'\n\toption device 'eth0'\n\toption proto 'dhcp'\n\n\
config interface 'guest'\n\toption device 'eth1.400'\n\toption proto 'static'\n\n\
config interface 'wg0'\n\toption proto 'wireguard'\n";

#[test]
fn mt7621_dsa_hardware_names_the_ports_and_matches_pppoe_wan() {
    use crate::link::fake_sysfs::MT7621;
    let d = board("p-mt7621", MT7621, MT7621_NETWORK, "auto");
    assert!(!d.devices().any(|x| x == "eth0"), "never the conduit: {d}");
    assert_eq!(d.via["br-lan"], ["lan1", "lan2", "lan3", "lan4"]);
    assert_eq!(d.via["wan.7"], ["wan"]);
    assert!(d.match_names().contains("pppoe-wan"), "{d}");
    golden("mt7621-hardware", &d.to_string());
    // Refused: software over the configured devices, the same match.
    golden("mt7621-fallback", &d.software_only().to_string());
}

#[test]
fn filogic_with_wifi_in_the_bridge() {
    use crate::link::fake_sysfs::FILOGIC;
    let d = board("p-filogic", FILOGIC, FILOGIC_NETWORK, "auto");
    let ft = d.flowtable.as_ref().unwrap();
    let devs: Vec<&str> = ft.devices.iter().map(String::as_str).collect();
    assert_eq!(devs, ["eth1", "lan1", "lan2", "lan3", "phy0-ap0"]);
    let sw = d.software_only();
    let devs: Vec<&str> = sw.devices().collect();
    assert_eq!(
        devs,
        ["br-lan", "eth1"],
        "fallback keeps the configured devices"
    );
    golden("filogic-fallback", &sw.to_string());
}

#[test]
fn x86_software_uses_the_configured_devices() {
    use crate::link::fake_sysfs::X86;
    let d = board("p-x86", X86, X86_NETWORK, "off");
    let devs: Vec<&str> = d.devices().collect();
    assert_eq!(devs, ["br-lan", "eth0", "eth1.400", "wg0"]);
    golden("x86-software", &d.to_string());
    let hw = board("p-x86hw", X86, X86_NETWORK, "auto");
    let devs: Vec<&str> = hw.devices().collect();
    assert_eq!(devs, ["eth0", "eth1", "eth2", "wg0"]);
}

#[test]
fn flow_add_covers_only_configured_devices_and_their_l3_names() {
    let cfg = parse_toml(
        "[offload]\ndevices = [\"br-lan\", \"wan\"]\nhardware = \"off\"\n[offload.l3_devices]\nwan = [\"ppp0\"]\n",
    )
    .unwrap();
    let d = plan(
        &cfg,
        &Inputs::links(&LinkSnapshot::from_names(["br-lan", "wan", "docker0"])),
    )
    .map(|p| p.ruleset)
    .unwrap();
    let text = d.to_string();
    assert!(
        text.contains("iifname { \"br-lan\", \"ppp0\", \"wan\" } oifname { \"br-lan\", \"ppp0\", \"wan\" } ct label 126 ct label 127 ct state established"),
        "{text}"
    );
    assert!(!text.contains("docker0"), "{text}");
    // A device the kernel refused leaves the match with everything it stands for.
    let mut less = d.clone();
    less.remove_device("wan");
    assert_eq!(
        less.match_names().into_iter().collect::<Vec<_>>(),
        ["br-lan"]
    );
}

#[test]
fn device_exclusions_follow_the_connection_in_both_directions() {
    let cfg = parse_toml(
        "[[offload.exclude]]\nmark = \"0x10/0xff\"\niif = [\"wlan0\"]\noif = [\"wan\"]\n",
    )
    .unwrap();
    let d = plan(&cfg, &Inputs::links(&LinkSnapshot::default()))
        .map(|p| p.ruleset)
        .unwrap();
    let rules: Vec<String> = d.excludes.iter().map(|r| r.to_string()).collect();
    assert_eq!(
        rules,
        [
            "ct mark and 0xff == 0x10 ct direction original iifname \"wlan0\" oifname \"wan\" return",
            "ct mark and 0xff == 0x10 ct direction reply iifname \"wan\" oifname \"wlan0\" return",
        ]
    );
    let only_mark = parse_toml("[[offload.exclude]]\nmark = \"7\"\n").unwrap();
    let d = plan(&only_mark, &Inputs::links(&LinkSnapshot::default()))
        .map(|p| p.ruleset)
        .unwrap();
    assert_eq!(d.excludes[0].to_string(), "ct mark 0x7 return");
}

#[test]
fn our_chain_runs_after_every_other_forward_chain() {
    let fc = |family: &str, table: &str, priority| ForwardChain {
        family: family.into(),
        table: table.into(),
        chain: "forward".into(),
        priority,
    };
    // fw4 (filter), firewalld (filter + 10), iptables-nft's security table (+ 50).
    let known = [
        fc("inet", "fw4", 0),
        fc("inet", "firewalld", 10),
        fc("ip", "security", 50),
    ];
    let (p, why) = choose_priority(None, &known).unwrap();
    assert_eq!(p, CHAIN_PRIORITY);
    assert!(why.contains("ip security forward (50)"), "{why}");
    // A chain at or above ours: one more than the highest.
    let (p, why) = choose_priority(None, &[fc("ip6", "late", 200), fc("inet", "fw4", 0)]).unwrap();
    assert_eq!(p, 201);
    assert!(why.contains("ip6 late forward (200)"), "{why}");
    assert_eq!(choose_priority(None, &[]).unwrap().0, CHAIN_PRIORITY);
    // Fixed: kept, and said when another chain runs after it.
    assert_eq!(
        choose_priority(Some(300), &known).unwrap(),
        (300, "fixed by [offload] priority".into())
    );
    let (p, why) = choose_priority(Some(20), &known).unwrap();
    assert_eq!(p, 20);
    assert!(why.contains("NOT after ip security forward"), "{why}");
    assert_eq!(priority_text(-5), "filter - 5");
    let cfg = parse_toml("[offload]\npriority = 400\n").unwrap();
    assert_eq!(
        plan(&cfg, &Inputs::links(&LinkSnapshot::default()))
            .map(|p| p.ruleset)
            .unwrap()
            .priority,
        400
    );
    let e = parse_toml("[offload]\npriority = 0\n").unwrap_err();
    assert!(
        e.message.contains("priority 0 is not valid") && e.line == 2,
        "{e:?}"
    );
}

#[test]
fn priority_against_chains_at_minus_300_0_10_100_in_every_family() {
    let fc = |family: &str, priority| ForwardChain {
        family: family.into(),
        table: format!("t{priority}"),
        chain: "forward".into(),
        priority,
    };
    // Each family alone, then all of them: the answer is above the highest, whatever its
    // family, since the kernel runs ip/ip6 and inet base chains of one hook in a single
    // priority order (inet chains register on both the ip and ip6 hooks).
    for family in ["ip", "ip6", "inet"] {
        let chains: Vec<ForwardChain> = [-300, 0, 10, 100].iter().map(|p| fc(family, *p)).collect();
        let (p, why) = choose_priority(None, &chains).unwrap();
        assert_eq!(p, CHAIN_PRIORITY, "{family}: {why}");
        assert!(
            why.contains(&format!("{family} t100 forward (100)")),
            "{why}"
        );
        assert!(chains.iter().all(|c| c.priority < p));
    }
    let mixed = [
        fc("ip", -300),
        fc("ip6", 0),
        fc("inet", 10),
        fc("ip6", 100),
        fc("ip", 250),
    ];
    let (p, why) = choose_priority(None, &mixed).unwrap();
    assert_eq!(p, 251, "{why}");
    assert!(why.contains("ip t250 forward (250)"), "{why}");
    // Only -300: the default still, well after it.
    assert_eq!(
        choose_priority(None, &[fc("inet", -300)]).unwrap().0,
        CHAIN_PRIORITY
    );
    // A fixed priority at or below one of them is kept, and said to be wrong.
    let (p, why) = choose_priority(Some(100), &mixed[..4]).unwrap();
    assert_eq!(p, 100);
    assert!(why.contains("NOT after ip6 t100 forward (100)"), "{why}");
}

/// A chain at i32::MAX: `h.priority + 1` wrapped to i32::MIN in release and put our chain
/// first, before every firewall.
#[test]
fn a_chain_at_the_top_priority_is_an_error_not_a_first_place() {
    let top = ForwardChain {
        family: "inet".into(),
        table: "odd".into(),
        chain: "forward".into(),
        priority: i32::MAX,
    };
    let e = choose_priority(None, &[top.clone()]).unwrap_err();
    assert!(
        e.contains("inet odd forward (2147483647)") && e.contains("highest priority"),
        "{e}"
    );
    let below = ForwardChain {
        priority: i32::MAX - 1,
        ..top.clone()
    };
    assert_eq!(choose_priority(None, &[below]).unwrap().0, i32::MAX);
    // A fixed priority is the admin's word, said to be wrong.
    let (p, why) = choose_priority(Some(300), &[top]).unwrap();
    assert_eq!(p, 300);
    assert!(why.contains("NOT after"), "{why}");
}

/// The other forward chains and the qdiscs are inputs of the one plan step: every
/// caller gets the same priority and the same shaped devices.
#[test]
fn priority_and_shaping_come_from_the_inputs() {
    let cfg = parse_toml("[offload]\ndevices = [\"wan\", \"lan\"]\n").unwrap();
    let links = LinkSnapshot::from_names(["wan", "lan", "eth9"]);
    let forward = [ForwardChain {
        family: "inet".into(),
        table: "late".into(),
        chain: "forward".into(),
        priority: 300,
    }];
    let shaped: BTreeMap<String, String> = [
        ("wan".to_string(), "cake qdisc on wan".to_string()),
        ("eth9".to_string(), "htb qdisc on eth9".to_string()),
    ]
    .into();
    let p = plan(
        &cfg,
        &Inputs {
            links: &links,
            forward: &forward,
            shaped: &shaped,
        },
    )
    .unwrap();
    assert_eq!(p.ruleset.priority, 301);
    assert!(
        p.priority_why.contains("inet late forward (300)"),
        "{}",
        p.priority_why
    );
    assert_eq!(
        p.ruleset.shaped.keys().collect::<Vec<_>>(),
        ["wan"],
        "only devices of the flowtable count"
    );
    let alone = plan(&cfg, &Inputs::links(&links)).unwrap();
    assert_eq!(alone.ruleset.priority, CHAIN_PRIORITY);
    assert!(alone.ruleset.shaped.is_empty());
}
