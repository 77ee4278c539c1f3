use super::*;
use crate::conntrack::{Tuple, IPS_OFFLOAD, UDP};

/// A forwarded, masqueraded TCP flow: LAN host 192.168.1.10 to 198.18.2.2, replies to
/// the router's WAN address 198.18.0.1.
fn flow() -> FlowRecord {
    FlowRecord {
        proto: TCP,
        zone: 0,
        orig: Tuple::of("192.168.1.10", 40000, "198.18.2.2", 443),
        reply: Tuple::of("198.18.2.2", 443, "198.18.0.1", 40000),
        mark: 0,
        tcp_state: Some(ESTABLISHED),
        status: IPS_SEEN_REPLY | 0x8,
        path: Path::Slow,
        on_path_ms: None,
        to_offload_ms: None,
        counters: None,
        why: None,
    }
}

fn context(toml: &str) -> Context {
    let cfg = crate::config::parse_toml(toml).unwrap();
    Context {
        local: ["198.18.0.1", "192.168.1.1", "127.0.0.1", "fd00::1"]
            .iter()
            .map(|a| a.parse().unwrap())
            .collect(),
        exclude: cfg.offload.exclude,
        exclude_file: "/etc/offloadd/offloadd.toml".into(),
        observing: None,
        last_flush: None,
        now_unix_ms: 100_000,
        hooked: vec!["br-lan".into(), "wan".into(), "pppoe-wan".into()],
    }
}

fn reason(c: &Context, f: &FlowRecord) -> (Reason, String) {
    let w = c.why(f).expect("a slow flow has a reason");
    (w.reason, w.text())
}

#[test]
fn offloaded_flows_have_no_reason() {
    let mut f = flow();
    f.path = Path::Sw;
    f.status |= IPS_OFFLOAD;
    assert_eq!(context("").why(&f), None);
}

#[test]
fn the_routers_own_traffic_is_told_apart_from_port_forwards_and_masquerade() {
    let c = context("");
    // A speed test to the router's LAN address.
    let mut to = flow();
    to.orig = Tuple::of("192.168.1.10", 40000, "192.168.1.1", 5201);
    to.reply = Tuple::of("192.168.1.1", 5201, "192.168.1.10", 40000);
    let (r, text) = reason(&c, &to);
    assert_eq!(r, Reason::RouterLocal);
    assert!(
        text.contains("192.168.1.1 is this machine's address"),
        "{text}"
    );
    // The router's own download (its replies come back to it).
    let mut from = flow();
    from.orig = Tuple::of("198.18.0.1", 50000, "198.18.2.2", 443);
    from.reply = Tuple::of("198.18.2.2", 443, "198.18.0.1", 50000);
    assert_eq!(reason(&c, &from).0, Reason::RouterLocal);
    // A port forward: to the WAN address, answered by a LAN host. Forwarded.
    let mut dnat = flow();
    dnat.orig = Tuple::of("198.18.2.2", 50000, "198.18.0.1", 8080);
    dnat.reply = Tuple::of("192.168.1.10", 80, "198.18.2.2", 50000);
    assert_eq!(reason(&c, &dnat).0, Reason::Unknown);
    // Masquerade: replies to a local address, opened by a LAN host. Forwarded.
    assert_eq!(reason(&c, &flow()).0, Reason::Unknown);
    // IPv6 loopback-free local address.
    let mut v6 = flow();
    v6.orig = Tuple::of("fd00::2", 1000, "fd00::1", 22);
    v6.reply = Tuple::of("fd00::1", 22, "fd00::2", 1000);
    assert_eq!(reason(&c, &v6).0, Reason::RouterLocal);
}

#[test]
fn one_way_and_unestablished_flows_say_so() {
    let c = context("");
    let mut one_way = flow();
    one_way.proto = UDP;
    one_way.tcp_state = None;
    one_way.status = 0x8;
    assert_eq!(reason(&c, &one_way).0, Reason::NoReply);
    let mut closing = flow();
    closing.tcp_state = Some(7);
    let (r, text) = reason(&c, &closing);
    assert_eq!(r, Reason::TcpState);
    assert!(text.starts_with("TCP TIME_WAIT: "), "{text}");
}

#[test]
fn exclusions_are_named_with_their_line() {
    let c = context(
        "[offload]\ndevices = [\"lan\"]\n\n[[offload.exclude]]\nl4proto = \"udp\"\ndport = [\"5060\"]\n\n[[offload.exclude]]\nsaddr = [\"192.168.1.0/24\"]\ndport = [\"400-500\"]\n\n[[offload.exclude]]\nmark = \"0x10/0xf0\"\n\n[[offload.exclude]]\ndport = [\"22\"]\niif = [\"wg0\"]\n",
    );
    let (r, text) = reason(&c, &flow());
    assert_eq!(r, Reason::Excluded);
    assert_eq!(
        text,
        "excluded by the exclusion at /etc/offloadd/offloadd.toml:8"
    );
    let mut marked = flow();
    marked.orig.dport = 8443;
    marked.mark = 0x1f;
    assert!(
        reason(&c, &marked).1.ends_with(":12"),
        "{:?}",
        reason(&c, &marked)
    );
    marked.mark = 0x20;
    assert_eq!(reason(&c, &marked).0, Reason::Unknown);
    let mut udp = flow();
    udp.proto = UDP;
    udp.tcp_state = None;
    udp.orig.dport = 5060;
    assert!(reason(&c, &udp).1.ends_with(":4"));
    // Another protocol, same port: not excluded by the UDP entry.
    let mut tcp5060 = flow();
    tcp5060.orig.dport = 5060;
    assert_eq!(reason(&c, &tcp5060).0, Reason::Unknown);
    let mut ssh = flow();
    ssh.orig.dport = 22;
    let (r, text) = reason(&c, &ssh);
    assert_eq!(r, Reason::MaybeExcluded);
    assert!(
        text.contains(":15") && text.contains("cannot tell"),
        "{text}"
    );
}

#[test]
fn the_wire_carries_the_reason_and_its_detail_only() {
    let c = context("");
    let mut one_way = flow();
    one_way.status = 0;
    assert_eq!(
        serde_json::to_string(&c.why(&one_way)).unwrap(),
        r#"{"reason":"no_reply"}"#
    );
    let mut to = flow();
    to.orig = Tuple::of("192.168.1.10", 40000, "192.168.1.1", 5201);
    to.reply = Tuple::of("192.168.1.1", 5201, "192.168.1.10", 40000);
    assert_eq!(
        serde_json::to_string(&c.why(&to)).unwrap(),
        r#"{"reason":"router_local","detail":"192.168.1.1"}"#
    );
}

#[test]
fn a_flush_explains_only_the_flows_it_took_out_of_the_flowtable() {
    let mut c = context("");
    c.last_flush = Some((95_000, "offloadd flush".into()));
    let mut out = flow();
    out.to_offload_ms = Some(12.0);
    // Offloaded, then slow for the 4 s since the flush 5 s ago; or not seen back yet.
    for on_slow in [Some(4000), None] {
        out.on_path_ms = on_slow;
        assert_eq!(reason(&c, &out).0, Reason::Flushed, "{on_slow:?}");
    }
    // Slow since before the flush: it left the flowtable for another reason.
    out.on_path_ms = Some(8000);
    assert_eq!(reason(&c, &out).0, Reason::Unknown);
    // Never offloaded (first seen 2.5 s ago, after the flush, as the VM tier's dmz
    // flow once was): the flush says nothing about it.
    let mut new = flow();
    new.on_path_ms = Some(2515);
    assert_eq!(reason(&c, &new).0, Reason::Unknown);
}

#[test]
fn observe_mode_and_a_recent_flush_explain_fit_flows() {
    let mut c = context("");
    c.last_flush = Some((95_000, "firewall change: inet fw4".into()));
    let mut flushed = flow();
    flushed.to_offload_ms = Some(3.0);
    let (r, text) = reason(&c, &flushed);
    assert_eq!(r, Reason::Flushed);
    assert!(
        text.contains("flushed 5.0 s ago (firewall change: inet fw4)"),
        "{text}"
    );
    c.now_unix_ms = 200_000;
    assert_eq!(
        reason(&c, &flushed).0,
        Reason::Unknown,
        "an old flush explains nothing"
    );
    c.observing = Some("mode = \"observe\"".into());
    assert_eq!(reason(&c, &flow()).0, Reason::Observe);
    // What the flow itself says comes first.
    let mut one_way = flow();
    one_way.status = 0;
    assert_eq!(reason(&c, &one_way).0, Reason::NoReply);
}

#[test]
fn a_route_by_a_device_outside_the_flowtable_is_named() {
    let c = context("");
    let f = flow();
    let w = c
        .outside_device(&f, Some("pppoe-wan".into()), Some("dmz0".into()))
        .unwrap();
    assert_eq!(
        (w.reason, w.detail.as_str()),
        (Reason::DeviceNotInFlowtable, "dmz0")
    );
    assert!(w
        .text()
        .starts_with("its traffic goes through dmz0, which is not in the flowtable"));
    assert_eq!(
        c.outside_device(&f, Some("pppoe-wan".into()), Some("br-lan".into())),
        None
    );
    assert_eq!(
        c.outside_device(&f, None, None),
        None,
        "no route known: still unknown"
    );
}

#[test]
fn hooked_names_are_the_flowtable_devices_their_ports_and_l3_names() {
    use crate::view::status::{Device, DeviceState, Status};
    let mut rules = Rules::default();
    rules
        .l3_devices
        .insert("wan".into(), vec!["pppoe-wan".into()]);
    let mut br = Device::new("br-lan", DeviceState::Hardware);
    br.via = vec!["lan1".into(), "lan2".into()];
    let st = Status {
        devices: vec![
            br,
            Device::new("wan", DeviceState::InFlowtable),
            Device::new("wlan0", DeviceState::Missing),
        ],
        ..Status::default()
    };
    assert_eq!(
        hooked(&rules, &st),
        ["br-lan", "lan1", "lan2", "wan", "pppoe-wan"]
    );
}

#[test]
fn a_flow_the_tracker_saw_leave_the_flowtable_says_so_unless_a_flush_explains_it() {
    let mut c = context("");
    let mut back = flow();
    back.why = Some(Why::left_flowtable());
    back.to_offload_ms = Some(3.0);
    assert_eq!(reason(&c, &back).0, Reason::LeftFlowtable);
    c.last_flush = Some((99_000, "asked for with offloadd flush".into()));
    assert_eq!(reason(&c, &back).0, Reason::Flushed);
    back.tcp_state = Some(7);
    assert_eq!(
        reason(&c, &back).0,
        Reason::TcpState,
        "a closed connection left by its FIN"
    );
}
