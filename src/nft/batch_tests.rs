//! The batch builder: labels, trial bytes, rule expressions as libnftnl prints them.
use super::*;
use crate::config::parse_toml;
use crate::link::LinkSnapshot;
use crate::nft::socket::messages;
use crate::plan::plan;
use crate::plan::Inputs;

fn desired() -> Desired {
    let cfg = parse_toml(include_str!("../../config/offloadd.toml")).unwrap();
    plan(
        &cfg,
        &Inputs::links(&LinkSnapshot::from_names(["eth0", "eth1"])),
    )
    .map(|p| p.ruleset)
    .unwrap()
}

#[test]
fn create_labels_every_message() {
    let b = create(&desired(), TableFlags { owner: true }, true);
    let kinds: Vec<u16> = messages(&b.bytes).iter().map(|h| h.0).collect();
    assert_eq!(kinds.first(), Some(&NFNL_MSG_BATCH_BEGIN));
    assert_eq!(kinds.last(), Some(&NFNL_MSG_BATCH_END));
    assert_eq!(kinds[1], nfnl_type(libc::NFT_MSG_DELTABLE));
    assert_eq!(kinds[2], nfnl_type(libc::NFT_MSG_NEWTABLE));
    assert_eq!(kinds[3], nfnl_type(sys::NFT_MSG_NEWFLOWTABLE));
    // begin, del, table, flowtable, chain, 4 excludes, set, elems, flow add, end
    assert_eq!(b.objects.len(), messages(&b.bytes).len());
    assert!(b
        .objects
        .iter()
        .any(|o| matches!(o, Object::Exclude { line, .. } if *line > 0)));
}

#[test]
fn generation_rides_on_batch_begin_and_nothing_else_moves() {
    let b = create(&desired(), TableFlags { owner: true }, true);
    let at = b.wire(1000, Delivery::At(0x0102_0304));
    assert_eq!(at.len(), b.bytes.len() + 8);
    let (plain, with) = (messages(&b.bytes), messages(&at));
    assert_eq!(plain.len(), with.len(), "same messages");
    let begin = &at[with[0].2.clone()];
    assert_eq!(with[0].0, NFNL_MSG_BATCH_BEGIN);
    assert_eq!(
        begin.len(),
        28,
        "nlmsghdr + nfgenmsg + one 8-byte attribute"
    );
    // struct nlattr { u16 len; u16 type } in host order, then the generation in
    // network order.
    assert_eq!(&begin[20..22], &8u16.to_ne_bytes());
    assert_eq!(&begin[22..24], &NFNL_BATCH_GENID.to_ne_bytes());
    assert_eq!(&begin[24..28], &[1, 2, 3, 4]);
    // Past the header's seq and flags, every other message is byte for byte libnftnl's.
    for (p, w) in plain.iter().zip(&with).skip(1) {
        assert_eq!(p.0, w.0);
        assert_eq!(
            b.bytes[p.2.start + 12..p.2.end],
            at[w.2.start + 12..w.2.end]
        );
    }
}

#[test]
fn every_message_gets_its_own_seq_and_asks_no_ack() {
    let b = create(&desired(), TableFlags { owner: true }, true);
    let wire = b.wire(5000, Delivery::At(1));
    let msgs = messages(&wire);
    assert_eq!(msgs.len() as u32, b.len());
    for (i, (_, seq, range)) in msgs.iter().enumerate() {
        assert_eq!(*seq, 5000 + i as u32);
        let flags = u16::from_ne_bytes([wire[range.start + 6], wire[range.start + 7]]);
        assert_eq!(
            flags & libc::NLM_F_ACK as u16,
            0,
            "message {i} asks for an ack"
        );
    }
    // Answers map back to what they concern; foreign numbers to the batch.
    assert_eq!(b.object(5000, 5002), Object::Table);
    assert_eq!(b.object(5000, 4999), Object::Batch);
    assert_eq!(b.object(5000, 5000 + b.len()), Object::Batch);
}

#[test]
fn trial_is_the_batch_without_end() {
    let b = create(&desired(), TableFlags { owner: true }, false);
    let t = b.wire(1, Delivery::Trial);
    let m = messages(&t);
    assert_eq!(m.len() as u32, b.len() - 1);
    assert_ne!(m.last().unwrap().0, NFNL_MSG_BATCH_END);
    assert_eq!(m[0].0, NFNL_MSG_BATCH_BEGIN);
    assert_eq!(m[0].2.len(), 20, "a trial carries no generation");
}

/// Bytes as libnftnl prints register data: 4-byte words in the host's byte order (so a
/// big-endian host prints network-order data as it is), the last one zero-padded.
fn words(b: &[u8]) -> String {
    b.chunks(4)
        .map(|c| {
            let mut w = [0u8; 4];
            w[..c.len()].copy_from_slice(c);
            format!("0x{:08x}", u32::from_ne_bytes(w))
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[test]
fn rules_render_as_kernel_expressions() {
    let b = create(&desired(), TableFlags { owner: true }, false);
    let rules = b.rule_texts();
    assert_eq!(rules.len(), 7);
    // After the exclusions: each direction marks its label bit, then flow add needs both.
    for (rule, dir, word) in [
        (
            &rules[4],
            words(&[0]),
            words(&label_bytes(LABEL_ORIGINAL)[12..]),
        ),
        (
            &rules[5],
            words(&[1]),
            words(&label_bytes(LABEL_REPLY)[12..]),
        ),
    ] {
        assert!(rule.contains("[ ct load direction => reg 1 ]"), "{rule}");
        assert!(rule.contains(&format!("[ cmp eq reg 1 {dir} ]")), "{rule}");
        assert!(
            rule.contains(&format!(
                "[ immediate reg 1 {z} {z} {z} {word} ]",
                z = words(&[0, 0, 0, 0])
            )),
            "{rule}"
        );
        assert!(rule.ends_with("[ ct set label with reg 1 ]"), "{rule}");
    }
    assert!(
        rules[6].contains("[ ct load label => reg 1 ]"),
        "{}",
        rules[6]
    );
    assert!(
        rules[6].contains(&format!(
            "[ bitwise reg 1 = ( reg 1 & {} )",
            words(&label_bytes(LABEL_ORIGINAL))
        )) && rules[6].contains(&format!(
            "[ bitwise reg 1 = ( reg 1 & {} )",
            words(&label_bytes(LABEL_REPLY))
        )),
        "{}",
        rules[6]
    );
    assert!(
        rules[0].contains("[ meta load l4proto => reg 1 ]"),
        "{}",
        rules[0]
    );
    assert!(
        rules[0].contains("[ ct load proto_dst => reg 1 , dir original ]"),
        "{}",
        rules[0]
    );
    // 10000-20000 in network byte order, printed as little-endian words.
    assert!(
        rules[1].contains(&format!(
            "[ range eq reg 1 {} {} ]",
            words(&10000u16.to_be_bytes()),
            words(&20000u16.to_be_bytes())
        )),
        "{}",
        rules[1]
    );
    assert!(
        rules[2].contains("[ ct load src_ip => reg 1 , dir original ]"),
        "{}",
        rules[2]
    );
    assert!(
        rules[3].contains("[ bitwise reg 1 = ( reg 1 & 0xffffffff 0x00000000"),
        "{}",
        rules[3]
    );
    assert!(
        rules[3].contains(&format!(
            "[ cmp eq reg 1 {} ",
            words(&[0x20, 0x01, 0x0d, 0xb8])
        )),
        "{}",
        rules[3]
    );
    assert!(
        rules[6].ends_with("[ flow_offload flowtable ft ]"),
        "{}",
        rules[6]
    );
}

#[test]
fn flow_add_is_limited_to_the_covered_devices() {
    let d = desired();
    let b = create(&d, TableFlags { owner: true }, false);
    let fts = b
        .objects
        .iter()
        .filter(|o| matches!(o, Object::Flowtable { .. }))
        .count();
    assert_eq!(fts, 1);
    let rules = b.rule_texts();
    let ft = rules.last().unwrap();
    assert!(ft.starts_with("[ meta load iifname => reg 1 ]"), "{ft}");
    assert!(ft.contains("[ meta load oifname => reg 1 ]"), "{ft}");
    assert!(ft.ends_with("[ flow_offload flowtable ft ]"), "{ft}");
    // Each lookup has its own anonymous set (an anonymous set binds to one lookup):
    // two NEWSET messages, each followed by its elements.
    assert_eq!(
        b.objects
            .iter()
            .filter(|o| **o == Object::DeviceSet)
            .count(),
        4
    );
}

#[test]
fn device_update_names_only_the_changed_hooks() {
    let d = desired();
    let ft = d.flowtable.as_ref().unwrap();
    let change = DeviceChange {
        name: FLOWTABLE,
        flowtable: ft,
        add: vec!["eth1".into()],
        remove: vec!["eth9".into()],
    };
    let b = update_devices(&[change]);
    let kinds: Vec<u16> = messages(&b.bytes).iter().map(|h| h.0).collect();
    assert_eq!(
        kinds[1..3],
        [
            nfnl_type(sys::NFT_MSG_DELFLOWTABLE),
            nfnl_type(sys::NFT_MSG_NEWFLOWTABLE)
        ]
    );
    let devices: Vec<Vec<String>> = b
        .objects
        .iter()
        .filter_map(|o| match o {
            Object::Flowtable { devices, .. } => Some(devices.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(
        devices,
        [vec!["eth9".to_string()], vec!["eth1".to_string()]]
    );
}

#[test]
fn mark_and_device_exclusions_are_kernel_expressions() {
    let cfg = parse_toml("[offload]\ndevices = [\"eth0\"]\n[[offload.exclude]]\nmark = \"0x10/0xff\"\niif = [\"wlan0\"]\n").unwrap();
    let d = plan(&cfg, &Inputs::links(&LinkSnapshot::from_names(["eth0"])))
        .map(|p| p.ruleset)
        .unwrap();
    let rules = create(&d, TableFlags { owner: true }, false).rule_texts();
    let original = &rules[0];
    assert!(original.contains("[ ct load mark => reg 1 ]"), "{original}");
    assert!(
        original.contains("[ bitwise reg 1 = ( reg 1 & 0x000000ff ) ^ 0x00000000 ]"),
        "{original}"
    );
    assert!(
        original.contains("[ cmp eq reg 1 0x00000010 ]"),
        "{original}"
    );
    assert!(
        original.contains("[ ct load direction => reg 1 ]"),
        "{original}"
    );
    assert!(
        original.contains("[ cmp eq reg 1 0x00000000 ]"),
        "{original}"
    );
    assert!(
        original.contains("[ meta load iifname => reg 1 ]"),
        "{original}"
    );
    // "wlan0" as four little-endian words, zero-padded to IFNAMSIZ.
    assert!(
        original.contains(&format!(
            "[ cmp eq reg 1 {} ]",
            words(b"wlan0\0\0\0\0\0\0\0\0\0\0\0")
        )),
        "{original}"
    );
    let reply = &rules[1];
    assert!(
        reply.contains(&format!("[ cmp eq reg 1 {} ]", words(&[1])))
            && reply.contains("[ meta load oifname => reg 1 ]"),
        "{reply}"
    );
}
