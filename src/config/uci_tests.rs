//! The UCI reader: the format as OpenWrt writes it, and its errors.

use super::*;

const SAMPLE: &str = r#"
package network

config interface 'loopback'
	option device 'lo'
	option proto 'static'

config device
	option name 'br-lan'
	option type 'bridge'
	list ports 'lan1'
	list ports "lan2"   # trailing comment
	list ports lan3

config interface 'wan'
	option device 'eth1'
	option proto pppoe
	option password 'it''s'"a \"test\""
"#;

#[test]
fn reads_sections_options_and_lists() {
    let f = parse_uci(SAMPLE).unwrap();
    assert_eq!(f.sections.len(), 3);
    let dev = f.section("@device[0]").unwrap();
    assert_eq!(dev.name, None);
    assert_eq!(dev.single("name"), Some(("br-lan", 9)));
    let ports: Vec<String> = dev.items("ports").into_iter().map(|(p, _)| p).collect();
    assert_eq!(ports, ["lan1", "lan2", "lan3"]);
    let wan = f.section("wan").unwrap();
    assert_eq!(wan.single("proto").unwrap().0, "pppoe");
    // 'it''s'"a \"test\"": three pieces joined, quotes resolved.
    assert_eq!(wan.single("password").unwrap().0, "itsa \"test\"");
    assert_eq!(
        f.section("@interface[-1]").unwrap().name.as_deref(),
        Some("wan")
    );
    assert!(f.section("@interface[2]").is_none());
    assert!(f.section("@interface[x]").is_none());
}

#[test]
fn space_separated_option_reads_as_items() {
    let f = parse_uci("config zone\n\toption network 'wan wan6'\n").unwrap();
    let items: Vec<String> = f.sections[0]
        .items("network")
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    assert_eq!(items, ["wan", "wan6"]);
}

fn err(text: &str) -> (usize, String) {
    let e = parse_uci(text).unwrap_err();
    (e.line, e.message)
}

#[test]
fn errors_name_the_line_and_the_fix() {
    let cases: &[(&str, usize, &str)] = &[
        ("option x 'y'\n", 1, "before any `config`"),
        (
            "config zone\n\toption name 'lan\n",
            2,
            "unterminated ' quote",
        ),
        (
            "config zone\n\toption name \"lan\n",
            2,
            "unterminated \" quote",
        ),
        (
            "config zone\n\toption name lan wan\n",
            2,
            "takes a name and one value",
        ),
        (
            "config zone\n\toption name\n",
            2,
            "takes a name and one value",
        ),
        (
            "config zone 'a'\nconfig zone 'a'\n",
            2,
            "defined twice (first at line 1)",
        ),
        (
            "config zone\n\toption name a\n\toption name b\n",
            3,
            "given twice",
        ),
        (
            "config zone\n\toption network a\n\tlist network b\n",
            3,
            "is an option (line 2) and a list",
        ),
        ("config zone x y\n", 1, "takes a type and an optional name"),
        ("config 'zo ne'\n", 1, "contains ' '"),
        ("config zone\n\toption na.me x\n", 2, "contains '.'"),
        ("confgi zone\n", 1, "unknown keyword 'confgi'"),
        (
            "config zone\n\toption name x\\\n",
            2,
            "backslash at the end",
        ),
        ("config\n", 1, "takes a type"),
    ];
    for (text, line, what) in cases {
        let (l, m) = err(text);
        assert_eq!(l, *line, "{text:?}: {m}");
        assert!(m.contains(what), "{text:?}: {m}");
    }
    let long = format!("config zone\n\toption name '{}'\n", "x".repeat(5000));
    assert!(err(&long).1.contains("longer than"));
}

#[test]
fn empty_and_comment_only_files_have_no_sections() {
    assert!(parse_uci("").unwrap().sections.is_empty());
    assert!(parse_uci("# nothing\n\n   # here\n")
        .unwrap()
        .sections
        .is_empty());
}
