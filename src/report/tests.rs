use super::*;
use crate::conntrack::{Counters, FlowKey, Transitions, TCP, UDP};
use crate::view::status::{Device, DeviceState, Hardware, LastApply, Refusal};

fn flow() -> FlowRecord {
    FlowRecord {
        proto: TCP,
        zone: 0,
        orig: Tuple::of("198.18.1.2", 43210, "198.18.2.2", 5201),
        reply: Tuple::of("198.18.2.2", 5201, "198.18.1.2", 43210),
        mark: 0,
        tcp_state: Some(3),
        status: 0xe | crate::conntrack::IPS_OFFLOAD,
        path: Path::Sw,
        on_path_ms: Some(12_400),
        to_offload_ms: Some(41.0),
        counters: Some(Counters {
            orig_packets: 50_000,
            orig_bytes: 75_000_000,
            reply_packets: 1234,
            reply_bytes: 100_000,
        }),
        why: None,
    }
}

#[test]
fn flow_line_reads_like_conntrack_plus_path() {
    assert_eq!(
        flow_line(&flow()),
        "sw   tcp 198.18.1.2:43210 -> 198.18.2.2:5201 ESTABLISHED on software for 12.4 s (offloaded 41 ms after first packet) 75.1 MB 51234 pkts"
    );
}

#[test]
fn flow_line_says_why_a_slow_flow_is_not_offloaded() {
    let mut f = flow();
    f.path = Path::Slow;
    f.status = 0x8;
    f.tcp_state = Some(1);
    f.on_path_ms = None;
    f.to_offload_ms = None;
    f.counters = None;
    f.why = Some(crate::view::explain::Why {
        reason: crate::view::explain::Reason::NoReply,
        detail: String::new(),
    });
    assert_eq!(
        flow_line(&f),
        "slow tcp 198.18.1.2:43210 -> 198.18.2.2:5201 SYN_SENT UNREPLIED; not offloaded: no reply seen yet (one-way UDP, or a TCP SYN not answered): offloaded once both directions have passed"
    );
}

#[test]
fn flow_line_shows_nat_zone_mark_and_v6() {
    let mut f = flow();
    f.proto = UDP;
    f.tcp_state = None;
    f.orig = Tuple::of("fd00:1::2", 5000, "fd00:2::2", 7777);
    f.reply = Tuple::of("fd00:2::2", 7777, "fd00:2::1", 5000);
    f.zone = 7;
    f.mark = 42;
    f.on_path_ms = None;
    f.to_offload_ms = None;
    f.counters = None;
    f.path = Path::Slow;
    f.status = 0x8;
    assert_eq!(
        flow_line(&f),
        "slow udp [fd00:1::2]:5000 -> [fd00:2::2]:7777 reply [fd00:2::2]:7777 -> [fd00:2::1]:5000 UNREPLIED zone 7 mark 0x2a"
    );
}

#[test]
fn transition_line_has_clock_and_time_to_offload() {
    let t = Transition {
        at_unix_ms: 86_400_000 * 3 + 3_723_456,
        key: FlowKey {
            proto: TCP,
            zone: 0,
            orig: flow().orig,
        },
        reply: flow().reply,
        from: Path::Slow,
        to: Path::Sw,
        after_ms: Some(2.5),
    };
    assert_eq!(
        transition_line(&t),
        "01:02:03.456Z tcp 198.18.1.2:43210 -> 198.18.2.2:5201 slow -> sw (2.5 ms after first packet)"
    );
}

#[test]
fn durations_and_bytes_are_short() {
    assert_eq!(duration_ms(0.25), "0.2 ms");
    assert_eq!(duration_ms(602.0), "602 ms");
    assert_eq!(duration_ms(2500.0), "2.5 s");
    assert_eq!(duration_ms(192_000.0), "3m12s");
    assert_eq!(duration_ms(7_500_000.0), "2h05m");
    assert_eq!(duration_ms(273_600_000.0), "3d04h");
    assert_eq!(bytes(999), "999 B");
    assert_eq!(bytes(1_500_000_000), "1.5 GB");
}

fn status() -> Status {
    Status {
        version: "0.1.0".into(),
        pid: 42,
        started_unix_ms: 1_000_000,
        now_unix_ms: 1_192_000,
        config: "/etc/offloadd/offloadd.toml".into(),
        role: "manage".into(),
        role_why: "mode = \"auto\" and no other flowtable covers the configured devices".into(),
        kernel_flowtables: Some(true),
        owner_flag: Some(true),
        priority: Some(200),
        priority_why: "after every other forward chain (highest: inet fw4 forward (filter))".into(),
        hardware: Hardware {
            policy: "auto".into(),
            state: "fallback".into(),
            refused: vec![Refusal {
                device: "lan0".into(),
                reason: "driver does not support TC_SETUP_FT (EOPNOTSUPP)".into(),
            }],
        },
        devices: vec![
            Device {
                name: "lan0".into(),
                state: DeviceState::InFlowtable,
                via: vec![],
                why: Some("hardware refused".into()),
            },
            Device::new("wlan0", DeviceState::Missing),
            Device {
                name: "br-lan".into(),
                state: DeviceState::Hardware,
                via: vec!["lan1".into(), "lan2".into()],
                why: None,
            },
        ],
        present_devices: vec![],
        other_flowtables: vec![],
        duplicates: vec![],
        flushes: 2,
        last_flush: Some(crate::view::status::Flush {
            at_unix_ms: 1_190_000,
            tables: vec!["inet fw4".into()],
            took_ms: 12.0,
            requested: false,
        }),
        flush_pending: Some(
            "after changes to inet fw4: the last try failed (device gone); retrying".into(),
        ),
        flush_on: "rules".into(),
        commits_not_flushed: 1400,
        flushes_requested: 0,
        apply_failures: 0,
        last_apply: Some(LastApply {
            at_unix_ms: 1_000_100,
            took_ms: 602.0,
            changed: true,
            error: None,
        }),
        warnings: vec!["wlan0: configured device does not exist".into()],
        metrics_errors: vec![],
        resync_interval_ms: 2000,
        conntrack: Some(Stats {
            slow: 12,
            sw: 3,
            hw: 0,
            transitions: Transitions {
                slow_to_sw: 15,
                to_slow: 12,
                ..Default::default()
            },
            to_offload_p50_ms: Some(41.0),
            to_offload_p95_ms: Some(120.0),
            to_offload_samples: 15,
            events: 1234,
            dumps: 61,
            full_dumps: 3,
            overruns: 1,
            status_filter: Some(false),
            resync_interval_ms: 9500,
            last_full_dump_ms: Some(190.0),
            ..Default::default()
        }),
        conntrack_error: None,
        conntrack_accounting: None,
    }
}

#[test]
fn status_text_answers_the_questions() {
    let text = status_text(&status());
    let expected = "\
offloadd 0.1.0, pid 42, up 3m12s, config /etc/offloadd/offloadd.toml
mode:       manage (mode = \"auto\" and no other flowtable covers the configured devices)
kernel:     flowtables yes, table owner flag yes
hardware:   auto -> fallback
priority:   forward chain at 200 (after every other forward chain (highest: inet fw4 forward (filter)))
devices:    lan0    in flowtable (software): hardware refused
            wlan0   missing (added when it appears)
            br-lan  in flowtable (hardware) via lan1, lan2
flows:      12 slow, 3 software, 0 hardware
moves:      slow->sw 15, slow->hw 0, sw->hw 0, hw->sw 0, back to slow 12
to offload: p50 41 ms, p95 120 ms (last 15 offloaded flows)
conntrack:  1234 events, resyncs every 9.5 s: 0 lookup rounds, 61 dumps (3 full), 1 overruns (events lost, resynced; raise [conntrack] event_buffer)
            last offloaded-only dump not yet, last full dump 190 ms (each walks the table: spaced by its cost)
            the kernel ignores the conntrack status filter (Linux < 5.15): every resync dumps the whole table, so it runs every 9.5 s instead of 2.0 s
last apply: 3m11s ago, took 602 ms, ruleset changed
flushes:    2 after firewall changes; last 2.0 s ago (inet fw4), took 12 ms
            1400 commits of other tables not flushed for (set elements only)
flush due:  after changes to inet fw4: the last try failed (device gone); retrying
warnings:   wlan0: configured device does not exist
";
    assert_eq!(text, expected);
}

#[test]
fn status_text_without_conntrack_says_why() {
    let mut st = status();
    st.conntrack = None;
    st.conntrack_error = Some("ctnetlink socket: Permission denied".into());
    assert!(status_text(&st).contains(
        "flows:      unknown: conntrack watcher unavailable: ctnetlink socket: Permission denied"
    ));
}

#[test]
fn metrics_are_prometheus_text() {
    let m = metrics(Some(&status()));
    for line in [
        "offloadd_up 1",
        "offloadd_managing 1",
        "offloadd_device_info{device=\"lan0\",state=\"in_flowtable\"} 1",
        "offloadd_device_info{device=\"wlan0\",state=\"missing\"} 1",
        "offloadd_hardware_refused{device=\"lan0\"} 1",
        "offloadd_flows{path=\"sw\"} 3",
        "offloadd_transitions_total{from=\"slow\",to=\"sw\"} 15",
        "offloadd_conntrack_overruns_total 1",
        "offloadd_flushes_total{cause=\"firewall_change\"} 2",
        "offloadd_flushes_total{cause=\"request\"} 0",
        "offloadd_apply_failures_total 0",
        "# TYPE offloadd_time_to_offload_seconds histogram",
        "offloadd_time_to_offload_seconds_bucket{le=\"+Inf\"} 0",
        "offloadd_time_to_offload_seconds_count 0",
        "# TYPE offloadd_flows gauge",
    ] {
        assert!(m.lines().any(|l| l == line), "missing {line:?} in\n{m}");
    }
    // Every sample line is `name{labels} value` with a numeric value.
    for l in m.lines().filter(|l| !l.starts_with('#')) {
        let v = l.rsplit(' ').next().unwrap();
        assert!(v.parse::<f64>().is_ok(), "{l}");
    }
    assert_eq!(metrics(None).lines().last(), Some("offloadd_up 0"));
}

#[test]
fn time_to_offload_is_a_cumulative_histogram() {
    let mut st = status();
    let c = st.conntrack.as_mut().unwrap();
    // 3 ms, 10 ms (on a bound: counted in it), 40 ms, 40 ms, 20 s (above every bound).
    for ms in [3, 10, 40, 40, 20_000] {
        c.time_to_offload(std::time::Duration::from_millis(ms));
    }
    let m = metrics(Some(&st));
    let bucket = |le: &str| {
        let want = format!("offloadd_time_to_offload_seconds_bucket{{le=\"{le}\"}} ");
        let line = m
            .lines()
            .find(|l| l.starts_with(&want))
            .unwrap_or_else(|| panic!("{want} in\n{m}"));
        line[want.len()..].parse::<u64>().unwrap()
    };
    let got: Vec<u64> = ["0.005", "0.01", "0.025", "0.05", "10", "+Inf"]
        .iter()
        .map(|le| bucket(le))
        .collect();
    assert_eq!(got, [1, 2, 2, 4, 4, 5]);
    assert!(
        m.lines()
            .any(|l| l == "offloadd_time_to_offload_seconds_count 5"),
        "{m}"
    );
    assert!(
        m.lines()
            .any(|l| l == "offloadd_time_to_offload_seconds_sum 20.093"),
        "{m}"
    );
}

#[test]
fn status_text_says_plainly_when_no_configured_device_exists() {
    let mut st = status();
    assert!(!status_text(&st).contains("NO DEVICES"));
    st.devices = vec![
        Device::new("eth0", DeviceState::Missing),
        Device::new("eth1", DeviceState::Missing),
    ];
    st.present_devices = vec!["ens1f0np0".into(), "ens1f1np1".into()];
    let text = status_text(&st);
    assert!(
        text.contains("NO DEVICES: none of the configured devices exists, so nothing is offloaded; devices here: ens1f0np0, ens1f1np1 (set [offload] devices and reload)\n"),
        "{text}"
    );
}

#[test]
fn status_text_says_what_resyncs_cost_and_when_counts_are_approximate() {
    let mut st = status();
    let c = st.conntrack.as_mut().unwrap();
    c.lookups = 40;
    c.last_lookup_flows = 1000;
    c.last_lookup_ms = Some(2.5);
    c.approximate = true;
    let text = status_text(&st);
    assert!(
        text.contains("conntrack:  1234 events, resyncs every 9.5 s: 40 lookup rounds, 61 dumps (3 full), 1 overruns"),
        "{text}"
    );
    assert!(
        text.contains("            last lookups: 1000 offloaded or recent flows in 2.5 ms (one kernel hash lookup each); a flow offloaded over 10 s is looked up every 9.5 s\n"),
        "{text}"
    );
    st.conntrack.as_mut().unwrap().recheck_every_ms = 95_000;
    let text = status_text(&st);
    assert!(
        text.contains(
            "looked up every 1m35s (spread: all at every resync would cost over 0.5 % of a core)\n"
        ),
        "{text}"
    );
    assert!(
        text.contains("counts are approximate: events were lost"),
        "{text}"
    );
}
