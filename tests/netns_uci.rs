//! Netns tier: the OpenWrt source against real devices of a throwaway namespace. A PPPoE
//! wan is matched on `pppoe-wan` (what the forward hook sees) and hooked on its carrier;
//! a shaper on `pppoe-wan` counts as shaping the WAN (SQM's usual place on PPPoE lines).

mod common;

use common::{require_root, Netns};

const BIN: &str = env!("CARGO_BIN_EXE_offloadd");

const NETWORK: &str = "config interface 'lan'\n\toption device 'lan0'\n\toption proto 'static'\n\n\
config interface 'wan'\n\toption device 'wan'\n\toption proto 'pppoe'\n";
const FIREWALL: &str = "config zone\n\toption name 'lan'\n\tlist network 'lan'\n\n\
config zone\n\toption name 'wan'\n\tlist network 'wan'\n";
const OFFLOADD: &str = "config offload 'main'\n\toption hardware 'auto'\n\n\
config exclude\n\toption proto 'udp'\n\toption dport '5060'\n\toption dest_zone 'wan'\n";

fn uci_dir(tag: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("offloadd-uci-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for (f, text) in [
        ("network", NETWORK),
        ("firewall", FIREWALL),
        ("offloadd", OFFLOADD),
    ] {
        std::fs::write(dir.join(f), text).unwrap();
    }
    dir
}

#[test]
#[ignore = "root and network namespaces: tests/run.sh runs it (cargo test -- --include-ignored)"]
fn pppoe_wan_is_matched_by_its_l3_name_and_its_shaper_is_seen() {
    require_root();
    let ns = Netns::new();
    // The carrier, and a stand-in for the session's device (a veth of that name: what
    // matters here is the name and its qdisc).
    ns.sh("ip link add lan0 type veth peer name lan0p && ip link add wan type veth peer name wanp");
    ns.sh("ip link add pppoe-wan type veth peer name pppp && ip link set pppoe-wan up");
    let dir = uci_dir("pppoe");
    let out = ns.run(BIN, &["plan", "--uci-dir", dir.to_str().unwrap()]);
    let plan = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{plan}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        plan.contains("ct direction original oifname \"pppoe-wan\" return"),
        "{plan}"
    );
    assert!(!plan.contains("oifname \"wan\" return"), "{plan}");
    assert!(plan.contains("devices = { lan0, wan }"), "{plan}");
    let before = ns.run(BIN, &["check", "--uci-dir", dir.to_str().unwrap()]);
    let before = String::from_utf8_lossy(&before.stdout).into_owned();
    assert!(!before.contains("is shaped"), "{before}");
    // SQM's egress shaper on the session device.
    ns.sh("tc qdisc add dev pppoe-wan root handle 1: htb default 10");
    let after = ns.run(BIN, &["check", "--uci-dir", dir.to_str().unwrap()]);
    let after = String::from_utf8_lossy(&after.stdout).into_owned();
    assert!(
        after.contains("pppoe-wan is shaped (htb qdisc on pppoe-wan): hardware offload would bypass the shaper"),
        "{after}"
    );
    std::fs::remove_dir_all(dir).unwrap();
}
