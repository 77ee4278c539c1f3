//! What each fuzz target does with one input, shared by the libFuzzer targets here and
//! by tests/fuzz_regressions.rs, which runs every committed corpus and crash input
//! through the same code on the stable toolchain. Each body panics only where an
//! invariant breaks; a parser's refusal is a normal outcome.

use std::time::Duration;

use offloadd::config::{openwrt, uci, Config};
use offloadd::conntrack::{decode, messages, FlowTracker, Message};
use offloadd::control::parse_request;
use offloadd::link::LinkSnapshot;
use offloadd::nft::batch::{self, TableFlags};
use offloadd::plan::Inputs;
use offloadd::publish::{response, route, Route, CONTENT_TYPE};

#[path = "netlink_bodies.rs"]
mod netlink_bodies;
pub use netlink_bodies::{monitor, readback, rtnetlink, READBACK_CONFIG, READBACK_LINKS};

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

/// The UCI reader and the OpenWrt mapping: up to three files (firewall, network,
/// offloadd), as load_uci reads them from /etc/config, separated by 0xFF bytes. 0xFF never
/// occurs in UTF-8 and load_uci refuses a file that is not UTF-8 before parsing, so every
/// text the parser can meet, NUL bytes included, is reachable (the separator was NUL,
/// which kept NUL from the parser). Other invalid UTF-8 becomes U+FFFD, text a file may
/// hold.
pub fn uci(data: &[u8]) {
    let mut files = Vec::new();
    for part in data.split(|&b| b == 0xff).take(3) {
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

/// What a metrics client sends before its head ends (publish::route), answered as the
/// endpoint answers it (publish::response). Checks: only a request line of `GET` or `HEAD`,
/// a target whose path is exactly `/metrics` and an `HTTP/1.x` version reaches the
/// metrics, HEAD without a body; nothing but Bad before a blank line ends the head; bytes
/// after that blank line change nothing (a pipelined second request included); every
/// answer's Content-Length is the length of the body it carries.
pub fn http(data: &[u8]) {
    let r = route(data);
    let ended = data.windows(4).any(|w| w == b"\r\n\r\n") || data.windows(2).any(|w| w == b"\n\n");
    if !ended {
        assert_eq!(r, Route::Bad, "routed a head that has not ended");
    }
    if let Route::Metrics { head_only } = r {
        let line = data
            .split(|&b| b == b'\n')
            .next()
            .expect("split yields one");
        let line = std::str::from_utf8(line).expect("a routed request line is UTF-8");
        let line = line.trim_end_matches('\r');
        let words: Vec<&str> = line.split(' ').collect();
        let [method, target, version] = words[..] else {
            panic!(
                "metrics for a request line of {} words: {line:?}",
                words.len()
            );
        };
        assert!(
            method == "GET" || method == "HEAD",
            "metrics for {method:?}"
        );
        assert_eq!(head_only, method == "HEAD");
        assert!(
            target == "/metrics" || target.starts_with("/metrics?"),
            "metrics for target {target:?}"
        );
        assert!(version.starts_with("HTTP/1."), "metrics for {version:?}");
    }
    if ended {
        let mut more = data.to_vec();
        more.extend_from_slice(b"POST /other HTTP/1.1\r\nX: y\r\n\r\n");
        assert_eq!(route(&more), r, "bytes after the head changed the route");
    }
    // The answer the endpoint sends for this route, with this input as a body.
    let (code, head_only) = match r {
        Route::Metrics { head_only } => (200, head_only),
        Route::NotFound => (404, false),
        Route::BadMethod => (405, false),
        Route::Bad => (400, false),
    };
    let out = response(code, CONTENT_TYPE, data, head_only);
    let end = out
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("an answer has a head")
        + 4;
    let head = std::str::from_utf8(&out[..end]).expect("an answer head is text");
    assert!(head.starts_with(&format!("HTTP/1.1 {code} ")), "{head}");
    assert!(
        head.contains(&format!("\r\nContent-Length: {}\r\n", data.len())),
        "{head}"
    );
    let body = &out[end..];
    if head_only {
        assert!(body.is_empty(), "HEAD answered with a body");
    } else {
        assert_eq!(body, data, "the body is not what was given");
    }
}
