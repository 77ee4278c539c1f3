use super::*;
use std::time::Duration;

#[test]
fn example_config_parses() {
    let cfg = parse_toml(include_str!("../../config/offloadd.toml")).unwrap();
    assert_eq!(cfg.mode, Mode::Auto);
    assert_eq!(cfg.offload.devices, vec!["eth0", "eth1"]);
    assert_eq!(cfg.offload.hardware, Hardware::Auto);
    assert_eq!(cfg.offload.exclude.len(), 2);
    assert_eq!(cfg.conntrack.resync_interval, Duration::from_secs(2));
}

#[test]
fn empty_file_is_defaults() {
    assert_eq!(parse_toml("").unwrap(), Config::default());
}

fn err(text: &str) -> ParseError {
    parse_toml(text).unwrap_err()
}

#[test]
fn errors_name_the_line() {
    let cases: &[(&str, usize, &str)] = &[
        ("mode = \"auto\"\nmode = \"x\"\n", 2, "duplicate"),
        (
            "\n\nmode = \"turbo\"\n",
            3,
            "\"auto\", \"manage\" or \"observe\"",
        ),
        (
            "[offload]\ndevices = [\"eth0\",\n \"eth0\"]\n",
            3,
            "listed twice",
        ),
        (
            "[offload]\ndevices = [\"a/b\"]\n",
            2,
            "valid interface name",
        ),
        (
            "[offload]\ndevices = [\"averyveryverylongname\"]\n",
            2,
            "1-15",
        ),
        (
            "[offload]\nhardware = \"yes\"\n",
            2,
            "\"off\", \"auto\" or \"require\"",
        ),
        ("[offload]\ncounter = \"yes\"\n", 2, "bool"),
        ("[offload]\nbogus = 1\n", 2, "unknown field"),
        (
            "[offload]\n[[offload.exclude]]\nl4proto = \"icmp\"\n",
            3,
            "tcp",
        ),
        ("[[offload.exclude]]\ndport = [\"70000\"]\n", 2, "1-65535"),
        (
            "[[offload.exclude]]\nsaddr = [\"192.0.2.1/24\"]\n",
            2,
            "host bits",
        ),
        ("\n[[offload.exclude]]\n", 2, "matches everything"),
        ("[conntrack]\nresync_interval = \"1ms\"\n", 2, "100ms"),
        ("[conntrack]\nevent_buffer = 12\n", 2, "between 4096 and"),
        ("[conntrack]\nevent_buffer = \"4M\"\n", 2, "integer"),
        ("[timeouts]\ntcp = \"1500ms\"\n", 2, "whole seconds"),
        ("[timeouts]\nudp = 30\n", 2, "string"),
        ("mode = \"auto\n", 1, ""),
    ];
    for (text, line, needle) in cases {
        let e = err(text);
        assert_eq!(e.line, *line, "{text:?}: {e:?}");
        assert!(e.message.contains(needle), "{text:?}: {:?}", e.message);
    }
}

#[test]
fn exclude_lines_are_recorded() {
    let cfg =
        parse_toml("[offload]\n\n[[offload.exclude]]\nl4proto = \"udp\"\ndport = [\"5060\"]\n")
            .unwrap();
    // The entry's line is its `[[offload.exclude]]` header.
    assert_eq!(cfg.offload.exclude[0].line, 3);
}

#[test]
fn event_buffer_is_sized_for_the_table_unless_configured() {
    use crate::config::{event_buffer_for, DEFAULT_EVENT_BUFFER, MAX_AUTO_EVENT_BUFFER};
    assert_eq!(parse_toml("").unwrap().conntrack.event_buffer, None);
    let cfg = parse_toml("[conntrack]\nevent_buffer = 1048576\n").unwrap();
    assert_eq!(cfg.conntrack.event_buffer, Some(1 << 20));
    // A 256 MB router (16,384 entries) and unknown: the 4 MiB floor; 65,536: 5 MiB.
    assert_eq!(event_buffer_for(Some(16_384)), DEFAULT_EVENT_BUFFER);
    assert_eq!(event_buffer_for(Some(65_536)), 5 << 20);
    assert_eq!(event_buffer_for(None), DEFAULT_EVENT_BUFFER);
    // 262,144 entries: 20 MiB, an eighth of the table at 640 bytes an event.
    assert_eq!(event_buffer_for(Some(262_144)), 20 << 20);
    // 1M and more: capped.
    assert_eq!(event_buffer_for(Some(1 << 20)), MAX_AUTO_EVENT_BUFFER);
    assert_eq!(event_buffer_for(Some(u64::MAX)), MAX_AUTO_EVENT_BUFFER);
}

#[test]
fn line_numbers_from_the_block_table_match_counting() {
    let mut text = String::new();
    for i in 0..3000 {
        // Lines of 0 to 2,999 bytes, so blocks hold none, one or many line starts.
        text.push_str(&"x".repeat(i * 7 % 3000));
        text.push('\n');
    }
    let lines = Lines::new(&text);
    // Counted byte by byte, at each newline and block edge and the byte after.
    let mut line = 1;
    let mut expect = vec![(0, 1)];
    for (offset, b) in text.bytes().enumerate() {
        if b == b'\n' || offset % 1024 == 0 {
            expect.push((offset, line));
            expect.push((offset + 1, line + usize::from(b == b'\n')));
        }
        if b == b'\n' {
            line += 1;
        }
    }
    for (offset, want) in expect {
        assert_eq!(lines.of(offset), want, "offset {offset}");
    }
    assert_eq!(lines.of(text.len() + 5), line);
    assert_eq!(Lines::new("").of(0), 1);
}
