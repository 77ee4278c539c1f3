//! UCI fixtures shaped like real OpenWrt configs (tests/fixtures/uci/*): each directory's
//! device set is compared with its `expected` file (`OFFLOADD_BLESS=1` rewrites them);
//! each malformed file in tests/fixtures/uci/bad names the line and text of its error.

use super::*;
use crate::plan::Inputs;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/uci")
}

fn summary(cfg: &Config) -> String {
    let mut s = format!(
        "mode={} hardware={} devices={}",
        cfg.mode,
        cfg.offload.hardware,
        cfg.offload.devices.join(" ")
    );
    if !cfg.offload.exclude.is_empty() {
        s.push_str(&format!(" excludes={}", cfg.offload.exclude.len()));
    }
    s + "\n"
}

#[test]
fn openwrt_shaped_configs_give_the_expected_devices() {
    let mut seen = 0;
    for entry in std::fs::read_dir(fixtures()).unwrap() {
        let dir = entry.unwrap().path();
        if !dir.join("expected").exists() {
            continue;
        }
        let cfg = load_uci(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        let got = summary(&cfg);
        let expected_path = dir.join("expected");
        if std::env::var_os("OFFLOADD_BLESS").is_some() {
            std::fs::write(&expected_path, &got).unwrap();
        }
        let want = std::fs::read_to_string(&expected_path).unwrap();
        assert_eq!(got, want, "{}", dir.display());
        seen += 1;
    }
    assert!(seen >= 5, "only {seen} fixtures");
}

#[test]
fn pppoe_wan_uses_its_carrier_and_excludes_are_read() {
    let cfg = load_uci(&fixtures().join("pppoe_guest_vlan")).unwrap();
    assert!(cfg.offload.devices.contains(&"eth1".to_string()));
    assert!(!cfg.offload.devices.iter().any(|d| d.starts_with("pppoe")));
    let x = &cfg.offload.exclude[0];
    assert_eq!(x.l4proto, Some(L4Proto::Udp));
    assert_eq!(x.dport.len(), 2);
    assert_eq!(x.line, 7);
    // src_zone resolves to the zone's devices; the mark keeps its mask.
    let g = &cfg.offload.exclude[1];
    assert_eq!(g.iif, ["br-lan.10"]);
    assert_eq!(g.mark.map(|m| (m.value, m.mask)), Some((0x100, 0xf00)));
}

#[test]
fn guest_vlan_zone_resolves_to_the_vlan_device() {
    let fw = parse_uci("config zone\n\toption name 'guest'\n\tlist network 'guest'\n").unwrap();
    let net = std::fs::read_to_string(fixtures().join("pppoe_guest_vlan/network")).unwrap();
    let cfg = from_uci(None, &fw, Some(&parse_uci(&net).unwrap())).unwrap();
    assert_eq!(cfg.offload.devices, ["br-lan.10"]);
    // Without flow_offloading in the firewall defaults, offloadd only observes.
    assert_eq!(cfg.mode, Mode::Observe);
}

#[test]
fn malformed_files_name_file_line_and_problem() {
    let dir = std::env::temp_dir().join(format!("offloadd-uci-bad-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for f in ["firewall", "network"] {
        std::fs::copy(fixtures().join("defaults").join(f), dir.join(f)).unwrap();
    }
    let mut count = 0;
    for entry in std::fs::read_dir(fixtures().join("bad")).unwrap() {
        let path = entry.unwrap().path();
        let bytes = std::fs::read(&path).unwrap();
        let first =
            String::from_utf8_lossy(bytes.split(|&b| b == b'\n').next().unwrap()).into_owned();
        let expect = first
            .strip_prefix("# expect: ")
            .unwrap_or_else(|| panic!("{}: no expect line", path.display()));
        let (line, text) = expect.split_once(": ").unwrap();
        std::fs::write(dir.join("offloadd"), &bytes).unwrap();
        let e = load_uci(&dir)
            .expect_err(&path.display().to_string())
            .to_string();
        let want = format!("{}/offloadd:{line}: ", dir.display());
        assert!(e.starts_with(&want), "{}: {e}", path.display());
        assert!(e.contains(text.trim()), "{}: {e}", path.display());
        assert_eq!(e.lines().count(), 1, "{e}");
        count += 1;
    }
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(count >= 20, "{count}");
}

#[test]
fn missing_firewall_file_is_a_read_error() {
    let e = load_uci(Path::new("/nonexistent-offloadd"))
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("/nonexistent-offloadd/firewall: cannot read"),
        "{e}"
    );
}

#[test]
fn pppoe_zone_matches_on_pppoe_wan_and_hooks_the_carrier() {
    let cfg = load_uci(&fixtures().join("pppoe_guest_vlan")).unwrap();
    // wan and wan6 ('@wan') both run over the session: one L3 name for the carrier.
    assert_eq!(cfg.offload.l3_devices["eth1"], ["pppoe-wan"]);
    let fw = parse_uci(
        "config zone\n\toption name 'wan'\n\tlist network 'wan'\n\tlist network 'wan6'\n",
    )
    .unwrap();
    let off = parse_uci(
        "config offload\n\nconfig exclude\n\toption proto 'udp'\n\toption dport '5060'\n\toption dest_zone 'wan'\n",
    )
    .unwrap();
    let net = std::fs::read_to_string(fixtures().join("pppoe_guest_vlan/network")).unwrap();
    let cfg = from_uci(Some(&off), &fw, Some(&parse_uci(&net).unwrap())).unwrap();
    assert_eq!(cfg.offload.exclude[0].oif, ["pppoe-wan"]);
    let links = crate::link::LinkSnapshot::from_names(["eth1"]);
    let text = crate::plan::plan(&cfg, &Inputs::links(&links))
        .map(|p| p.ruleset)
        .unwrap()
        .to_string();
    assert!(
        text.contains("meta l4proto udp ct original proto-dst 5060 ct direction original oifname \"pppoe-wan\" return"),
        "{text}"
    );
    assert!(!text.contains("oifname \"eth1\" return"), "{text}");
}

#[test]
fn an_exclude_that_resolves_to_nothing_is_an_error_with_its_line() {
    let fw = parse_uci(
        "config zone\n\toption name 'lan'\n\tlist network 'lan'\n\nconfig zone\n\toption name 'empty'\n",
    )
    .unwrap();
    let net = parse_uci("config interface 'lan'\n\toption device 'br-lan'\n").unwrap();
    let err = |offloadd: &str| {
        let off = parse_uci(offloadd).unwrap();
        match from_uci(Some(&off), &fw, Some(&net)) {
            Err((UciFileName::Offloadd, e)) => (e.line, e.message),
            other => panic!("{other:?}"),
        }
    };
    // No match options at all: a bare `return` would keep every connection slow.
    let (line, msg) = err("config offload\n\nconfig exclude 'x'\n\toption name 'nothing'\n");
    assert_eq!(line, 3);
    assert!(msg.contains("matches every connection"), "{msg}");
    // A zone without devices.
    let (line, msg) =
        err("config offload\n\nconfig exclude\n\toption proto 'tcp'\n\tlist dest_zone 'empty'\n");
    assert_eq!(line, 5);
    assert!(msg.contains("zone 'empty' has no devices"), "{msg}");
}

#[test]
fn tunnels_and_wireguard_get_their_l3_names() {
    let fw = parse_uci(
        "config zone\n\toption name 'vpn'\n\tlist network 'wg0'\n\tlist network 'henet'\n",
    )
    .unwrap();
    let net = parse_uci(
        "config interface 'wg0'\n\toption proto 'wireguard'\n\nconfig interface 'henet'\n\toption proto '6in4'\n",
    )
    .unwrap();
    let off = parse_uci("config offload\n\nconfig exclude\n\tlist src_zone 'vpn'\n").unwrap();
    let cfg = from_uci(Some(&off), &fw, Some(&net)).unwrap();
    // wg0 is hooked; the 6in4 tunnel has no carrier to hook but is matched by name.
    assert_eq!(cfg.offload.devices, ["wg0"]);
    assert_eq!(cfg.offload.exclude[0].iif, ["wg0", "6in4-henet"]);
}
