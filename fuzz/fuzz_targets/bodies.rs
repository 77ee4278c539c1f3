//! What each fuzz target does with one input, shared by the libFuzzer targets here and
//! by tests/fuzz_regressions.rs, which runs every committed corpus and crash input
//! through the same code on the stable toolchain. Each body panics only where an
//! invariant breaks; a parser's refusal is a normal outcome.

use std::time::Duration;

use offloadd::plan::Inputs;
use offloadd::config::{openwrt, uci, Config};
use offloadd::conntrack::{decode, messages, FlowTracker, Message};
use offloadd::control::parse_request;
use offloadd::link::LinkSnapshot;
use offloadd::nft::batch::{self, TableFlags};

/// After parsing: plan against fixed present devices, render `offloadd plan`'s text
/// and build the kernel batch (libnftnl), so every value the parsers let through
/// reaches the code that turns it into netlink.
fn plan_and_build(cfg: &Config) {
    let links = LinkSnapshot::from_names(["lan0", "wan0", "br-lan", "eth0", "eth1", "wg0"]);
    let Ok(desired) = offloadd::plan::plan(cfg, &Inputs::links(&links)).map(|p| p.ruleset) else {
        return;
    };
    let _ = desired.to_string();
    let built = batch::create(&desired, TableFlags { owner: true }, true);
    // Every rule we built must read back through libnftnl's parser: the exclusions and,
    // when some device is configured, the two direction labels and the flow add rule.
    let flow_add = 3 * usize::from(!desired.match_names().is_empty());
    assert_eq!(
        built.rule_texts().len(),
        desired.excludes.len() + flow_add,
        "rules read back from the batch"
    );
}

/// Errors are shown as `file:line: message` on one line (README promises it).
fn one_line_error(e: &offloadd::config::ParseError) {
    assert!(e.line >= 1, "error on line {}: {}", e.line, e.message);
    assert!(
        !e.message.contains('\n'),
        "error of more than one line: {:?}",
        e.message
    );
}

/// TOML config (`/etc/offloadd.toml`) -> Config -> plan -> nft batch.
pub fn toml_plan(data: &[u8]) {
    // load_toml turns non-UTF-8 into a file:line error before parsing.
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match offloadd::config::parse_toml(text) {
        Ok(cfg) => plan_and_build(&cfg),
        Err(e) => one_line_error(&e),
    }
}

/// The UCI reader and the OpenWrt mapping: up to three files separated by NUL bytes
/// (firewall, network, offloadd), as load_uci reads them from /etc/config.
pub fn uci(data: &[u8]) {
    let mut files = Vec::new();
    for part in data.split(|&b| b == 0).take(3) {
        match uci::parse_uci(&String::from_utf8_lossy(part)) {
            Ok(f) => files.push(f),
            Err(e) => return one_line_error(&e),
        }
    }
    let (firewall, network, offloadd) = (files.first(), files.get(1), files.get(2));
    if let Ok(cfg) = openwrt::from_uci(offloadd, firewall.expect("split yields one"), network) {
        plan_and_build(&cfg);
    }
}

/// One recv buffer of ctnetlink messages, decoded and fed to the flow tracker; its
/// totals per path must always add up to the flows it holds.
pub fn ctnetlink(data: &[u8]) {
    let mut tracker = FlowTracker::new(0);
    for (i, m) in messages(data).enumerate() {
        if let Message::Conntrack {
            msg_type,
            flags,
            bytes,
        } = m
        {
            if let Ok(Some(ev)) = decode(msg_type, flags, bytes) {
                tracker.event(&ev, Duration::from_millis(i as u64));
            }
        }
    }
    let s = tracker.stats();
    assert_eq!((s.slow + s.sw + s.hw) as usize, tracker.len());
    assert_eq!(
        tracker.flows(None, Duration::from_secs(1)).len(),
        tracker.len()
    );
}

/// The control socket's request parser; a request that parses survives a round trip
/// through its own JSON.
pub fn control(data: &[u8]) {
    if let Ok(req) = parse_request(data) {
        let again = serde_json::to_string(&req).expect("a Request serializes");
        assert_eq!(parse_request(again.as_bytes()), Ok(req));
    }
}
