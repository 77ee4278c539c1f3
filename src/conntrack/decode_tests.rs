//! Decoding what the kernel really sent: tests/fixtures/ct/*.bin were recorded by
//! tests/fixtures/ct/capture.py on Linux 6.18 (conntrack accounting on, one marked TCP
//! flow over 127.0.0.1, UDP over ::1 where only the request direction is in zone 7, so
//! the reply opened a second entry in zone 0).

use std::net::IpAddr;

use super::*;
use crate::conntrack::{Path, IPS_HW_OFFLOAD, IPS_OFFLOAD};

const DUMP_LE: &[u8] = include_bytes!("../../tests/fixtures/ct/dump.bin");
const EVENTS_LE: &[u8] = include_bytes!("../../tests/fixtures/ct/events.bin");

/// The recordings in this host's byte order. They were made on x86, and netlink puts
/// its own headers (message and attribute lengths and types) in host order while
/// ctnetlink's values are big-endian; so on a big-endian host (the s390x cross tier) the
/// headers are swapped, nested attributes (NLA_F_NESTED) included, and values left alone.
fn host_order(recorded: &[u8]) -> Vec<u8> {
    let mut b = recorded.to_vec();
    if cfg!(target_endian = "little") {
        return b;
    }
    fn swap(b: &mut [u8]) {
        b.reverse();
    }
    fn attrs(b: &mut [u8]) {
        let mut off = 0;
        while off + 4 <= b.len() {
            let len = u16::from_le_bytes([b[off], b[off + 1]]) as usize;
            let ty = u16::from_le_bytes([b[off + 2], b[off + 3]]);
            swap(&mut b[off..off + 2]);
            swap(&mut b[off + 2..off + 4]);
            if len < 4 || off + len > b.len() {
                return;
            }
            if ty & 0x8000 != 0 {
                attrs(&mut b[off + 4..off + len]);
            }
            off += (len + 3) & !3;
        }
    }
    let mut off = 0;
    while off + 16 <= b.len() {
        let len = u32::from_le_bytes(b[off..off + 4].try_into().unwrap()) as usize;
        let ty = u16::from_le_bytes([b[off + 4], b[off + 5]]);
        for (at, n) in [(0, 4), (4, 2), (6, 2), (8, 4), (12, 4)] {
            swap(&mut b[off + at..off + at + n]);
        }
        if len < 16 || off + len > b.len() {
            break;
        }
        match ty {
            // NLMSG_DONE and NLMSG_ERROR start with an int.
            2 | 3 if len >= 20 => swap(&mut b[off + 16..off + 20]),
            // ctnetlink: nfgenmsg (res_id is big-endian already), then attributes.
            t if t >> 8 == 1 && len >= 20 => attrs(&mut b[off + 20..off + len]),
            _ => {}
        }
        off += (len + 3) & !3;
    }
    b
}

fn dump() -> Vec<u8> {
    host_order(DUMP_LE)
}

fn events() -> Vec<u8> {
    host_order(EVENTS_LE)
}

fn decode_all(bytes: &[u8]) -> (Vec<Event>, bool) {
    let mut out = Vec::new();
    let mut done = false;
    for m in messages(bytes) {
        match m {
            Message::Conntrack {
                msg_type,
                flags,
                bytes,
            } => {
                if let Some(e) = decode(msg_type, flags, bytes).unwrap() {
                    out.push(e);
                }
            }
            Message::Done => done = true,
            other => panic!("unexpected {other:?}"),
        }
    }
    (out, done)
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// The first message of the dump with CTA_STATUS rewritten: no NIC here can produce
/// IPS_HW_OFFLOAD, so the hardware entry is the recorded one with the bits set by hand.
fn first_with_status(status: u32) -> Vec<u8> {
    let d = dump();
    let Some(Message::Conntrack { bytes, .. }) = messages(&d).next() else {
        panic!()
    };
    let mut msg = bytes.to_vec();
    let mut off = HEADERS;
    while off + 4 <= msg.len() {
        let len = u16::from_ne_bytes([msg[off], msg[off + 1]]) as usize;
        let kind = u16::from_ne_bytes([msg[off + 2], msg[off + 3]]) & 0x3fff;
        if kind == CTA_STATUS {
            msg[off + 4..off + 8].copy_from_slice(&status.to_be_bytes());
            return msg;
        }
        off += (len + 3) & !3;
    }
    panic!("no CTA_STATUS in the fixture");
}

#[test]
fn dump_decodes_tcp_v4_with_mark_state_and_counters() {
    let (events, done) = decode_all(&dump());
    assert!(done, "a dump ends with NLMSG_DONE");
    assert_eq!(events.len(), 3);
    let tcp = events[0].entry;
    assert_eq!(events[0].kind, EventKind::Update);
    assert_eq!(tcp.key.proto, TCP);
    assert_eq!(tcp.key.zone, 0);
    assert_eq!(tcp.key.orig.src, ip("127.0.0.1"));
    assert_eq!((tcp.key.orig.sport, tcp.key.orig.dport), (58302, 8080));
    assert_eq!((tcp.reply.sport, tcp.reply.dport), (8080, 58302));
    assert_eq!(tcp.mark, 42);
    assert_eq!(tcp.tcp_state, Some(3), "TCP_CONNTRACK_ESTABLISHED");
    assert_eq!(tcp.status, 0xe, "SEEN_REPLY | ASSURED | CONFIRMED");
    assert_eq!(tcp.path(), Path::Slow);
    let c = tcp.counters.expect("accounting was on");
    assert_eq!(
        (c.orig_packets, c.orig_bytes, c.reply_packets, c.reply_bytes),
        (3, 1164, 2, 112)
    );
}

#[test]
fn dump_decodes_udp_v6_in_a_zone() {
    let (events, _) = decode_all(&dump());
    let zoned = events[1].entry;
    assert_eq!(zoned.key.proto, UDP);
    assert_eq!(zoned.key.zone, 7);
    assert_eq!(zoned.key.orig.src, ip("::1"));
    assert_eq!(zoned.key.orig.dport, 5353);
    assert_eq!(zoned.tcp_state, None);
    let other = events[2].entry;
    assert_eq!(other.key.zone, 0);
    assert_eq!(other.key.orig.sport, 5353);
    assert_ne!(
        zoned.key, other.key,
        "zone and tuple tell the two entries apart"
    );
}

#[test]
fn events_carry_new_update_destroy() {
    let (events, _) = decode_all(&events());
    let kinds: Vec<(EventKind, u8)> = events.iter().map(|e| (e.kind, e.entry.key.proto)).collect();
    use EventKind::*;
    assert_eq!(
        kinds,
        [
            (New, TCP),
            (Update, TCP),
            (Update, TCP),
            (New, UDP),
            (New, UDP),
            (Destroy, UDP),
            (Destroy, UDP)
        ]
    );
    assert_eq!(events[2].entry.status, 0xe);
    assert_eq!(events[5].entry.key.zone, 7);
}

#[test]
fn offload_bits_classify() {
    for (status, path) in [
        (0xe, Path::Slow),
        (0xe | IPS_OFFLOAD, Path::Sw),
        (0xe | IPS_OFFLOAD | IPS_HW_OFFLOAD, Path::Hw),
    ] {
        let msg = first_with_status(status);
        let e = decode(IPCTNL_MSG_CT_NEW, 0, &msg).unwrap().unwrap();
        assert_eq!(e.entry.status, status);
        assert_eq!(e.entry.path(), path, "status {status:#x}");
    }
}

#[test]
fn truncated_messages_are_errors_not_panics() {
    let d = dump();
    let Some(Message::Conntrack { bytes, .. }) = messages(&d).next() else {
        panic!()
    };
    for cut in 0..bytes.len() {
        // Every prefix either decodes (the cut fell between attributes we do not need)
        // or reports an error; none panics.
        let _ = decode(IPCTNL_MSG_CT_NEW, 0, &bytes[..cut]);
    }
    assert!(decode(IPCTNL_MSG_CT_NEW, 0, &bytes[..HEADERS + 8]).is_err());
}

#[test]
fn non_entry_messages_are_skipped() {
    let d = dump();
    let Some(Message::Conntrack { bytes, .. }) = messages(&d).next() else {
        panic!()
    };
    assert_eq!(decode(4, 0, bytes).unwrap(), None);
}

#[test]
fn error_messages_carry_errno() {
    let mut msg = vec![0u8; 36];
    msg[..4].copy_from_slice(&36u32.to_ne_bytes());
    msg[4..6].copy_from_slice(&NLMSG_ERROR.to_ne_bytes());
    msg[16..20].copy_from_slice(&(-libc::EINVAL).to_ne_bytes());
    assert_eq!(
        messages(&msg).collect::<Vec<_>>(),
        [Message::Error(libc::EINVAL)]
    );
}
