//! Netns tier: `offloadd flows` at table size. The daemon keeps no state for old slow
//! flows, so a list of the whole table is a dump streamed through it: it must equal
//! `conntrack -L` entry for entry at 100k entries.

mod common;

use std::collections::BTreeSet;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{require_root, Daemon, Netns};

const BIN: &str = env!("CARGO_BIN_EXE_offloadd");
const ENTRIES: usize = 100_000;

/// (destination, destination port) of each UDP entry: the fill sends from one socket to
/// a distinct (address, port) each time.
type Listing = BTreeSet<(String, u16)>;

fn from_conntrack(text: &str) -> Listing {
    text.lines()
        .filter(|l| l.starts_with("udp"))
        .filter_map(|l| {
            let field = |k: &str| l.split_whitespace().find_map(|w| w.strip_prefix(k));
            Some((field("dst=")?.to_string(), field("dport=")?.parse().ok()?))
        })
        .collect()
}

fn from_offloadd(json: &[u8]) -> (usize, Listing) {
    let flows: Vec<serde_json::Value> = serde_json::from_slice(json).expect("flows JSON array");
    let set = flows
        .iter()
        .filter(|f| f["proto"] == 17)
        .map(|f| {
            let o = &f["orig"];
            (
                o["dst"].as_str().unwrap().to_string(),
                o["dport"].as_u64().unwrap() as u16,
            )
        })
        .collect();
    (flows.len(), set)
}

#[test]
#[ignore = "root and network namespaces: tests/run.sh runs it (cargo test -- --include-ignored)"]
fn flows_streams_the_whole_table_entry_for_entry_at_100k() {
    require_root();
    let ns = Netns::new();
    ns.sh("sysctl -qw net.netfilter.nf_conntrack_udp_timeout=3600");
    ns.sh("nft add table inet t; nft add chain inet t out '{ type filter hook output priority 0; }'; nft add rule inet t out ct state new counter");
    let fill = Command::new("bash")
        .arg("-c")
        .arg(format!(
            ". '{}/tests/bench/ns.sh' && bench_fill '{}' {ENTRIES}",
            env!("CARGO_MANIFEST_DIR"),
            ns.name
        ))
        .status()
        .unwrap();
    assert!(fill.success(), "bench_fill");
    let d = Daemon::start(
        &ns,
        BIN,
        "mode = \"observe\"\n[offload]\ndevices = [\"lo\"]\n",
    );
    let out = d.cli(BIN, &["flows", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let kernel = from_conntrack(&ns.sh("conntrack -L -p udp 2>/dev/null"));
    let (listed, ours) = from_offloadd(&out.stdout);
    assert!(
        kernel.len() >= ENTRIES,
        "the fill made {} entries",
        kernel.len()
    );
    assert_eq!(listed, ours.len(), "no flow listed twice");
    if ours != kernel {
        let missing: Vec<_> = kernel.difference(&ours).take(5).collect();
        let extra: Vec<_> = ours.difference(&kernel).take(5).collect();
        panic!(
            "flows vs conntrack -L: {} vs {} entries; missing {missing:?}, extra {extra:?}",
            ours.len(),
            kernel.len()
        );
    }
    // The counts agree once the first full dump has counted what it does not keep.
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut st = d.status(BIN);
    while st["conntrack"]["full_dumps"].as_u64() == Some(0) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
        st = d.status(BIN);
    }
    let c = &st["conntrack"];
    assert_eq!(c["slow"].as_u64(), Some(kernel.len() as u64), "{c}");
    assert_eq!(
        c["untracked"].as_u64(),
        Some(kernel.len() as u64),
        "one-way slow flows from before the start are only counted: {c}"
    );
    // A client that reads a few lines and hangs up leaves the daemon answering.
    let head = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "'{BIN}' --socket '{}' flows | head -3",
            d.socket.display()
        ))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&head.stdout).lines().count(), 3);
    assert!(
        d.cli(BIN, &["status"]).status.success(),
        "status after a client hung up"
    );
}
