//! Issue 26, in both sources: exclusion lists capped where they are read (by the line of
//! the first item over), errors that show a prefix of a long value and not the value,
//! and parsing whose time grows with the input, not with its square.

use std::time::Duration;

use super::openwrt::{from_uci, load_uci};
use super::uci::parse_uci;
use super::{parse_toml, ParseError};

/// A TOML exclusion whose list `key` has `n` items, one a line; item i is on line 3 + i.
fn toml_list(key: &str, item: &str, n: usize) -> String {
    let items: String = (0..n).map(|_| format!("  \"{item}\",\n")).collect();
    format!("[[offload.exclude]]\n{key} = [\n{items}]\n")
}

const KEYS: [(&str, &str); 6] = [
    ("sport", "1"),
    ("dport", "2"),
    ("saddr", "192.0.2.1"),
    ("daddr", "2001:db8::/32"),
    ("iif", "eth0"),
    ("oif", "eth1"),
];

#[test]
fn toml_lists_over_256_items_are_refused_at_the_first_item_over() {
    for (key, item) in KEYS {
        assert!(parse_toml(&toml_list(key, item, 256)).is_ok(), "{key}");
        let e = parse_toml(&toml_list(key, item, 3000)).unwrap_err();
        assert_eq!(e.line, 3 + 256, "{key}: {e:?}");
        assert!(e.message.contains("256"), "{key}: {}", e.message);
    }
}

/// The three files of a UCI directory (offloadd, firewall), in a temp directory.
fn uci_dir(tag: &str, offloadd: &str, firewall: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("offloadd-limits-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("offloadd"), offloadd).unwrap();
    std::fs::write(dir.join("firewall"), firewall).unwrap();
    dir
}

const FIREWALL: &str = "config zone\n\toption name 'lan'\n\tlist device 'lo'\n";

#[test]
fn uci_lists_over_256_items_are_refused_with_file_and_line() {
    let keys = [
        ("sport", "1"),
        ("dport", "2"),
        ("saddr", "192.0.2.1"),
        ("daddr", "2001:db8::/32"),
        ("src_device", "eth0"),
        ("dest_device", "eth1"),
    ];
    for (key, item) in keys {
        // Line 1 config offload, 2 blank, 3 config exclude, item i on line 4 + i.
        let items: String = (0..3000)
            .map(|_| format!("\tlist {key} '{item}'\n"))
            .collect();
        let text = format!("config offload\n\nconfig exclude\n{items}");
        let dir = uci_dir(key, &text, FIREWALL);
        let e = load_uci(&dir).unwrap_err().to_string();
        std::fs::remove_dir_all(&dir).unwrap();
        let want = format!("{}:{}: ", dir.join("offloadd").display(), 4 + 256);
        assert!(e.starts_with(&want), "{key}: {e}");
        assert!(e.contains("256"), "{key}: {e}");
        // The same items as words of one option: refused on that option's line.
        let words = vec![item; 257].join(" ");
        let text = format!("config offload\n\nconfig exclude\n\toption {key} '{words}'\n");
        let off = parse_uci(&text).unwrap();
        let fw = parse_uci(FIREWALL).unwrap();
        let (_, e) = from_uci(Some(&off), &fw, None).unwrap_err();
        assert_eq!(e.line, 4, "{key}: {e:?}");
    }
}

#[test]
fn a_zone_of_more_than_256_devices_is_refused_where_it_is_named() {
    let devices: String = (0..300)
        .map(|i| format!("\tlist device 'd{i}'\n"))
        .collect();
    let fw = parse_uci(&format!("config zone\n\toption name 'big'\n{devices}")).unwrap();
    let off = parse_uci("config offload\n\nconfig exclude\n\toption src_zone 'big'\n").unwrap();
    let (_, e) = from_uci(Some(&off), &fw, None).unwrap_err();
    assert_eq!(e.line, 4, "{e:?}");
    assert!(e.message.contains("256"), "{}", e.message);
}

/// The error must be short and say how long the value was.
fn short(what: &str, e: &ParseError, len: usize) {
    assert!(
        e.message.len() < 500 && e.message.contains(&format!("({len} bytes)")),
        "{what}: {} bytes: {:?}",
        e.message.len(),
        e.message.get(..500).unwrap_or(&e.message)
    );
    assert!(!e.message.contains('\n'), "{what}: {:?}", e.message);
}

#[test]
fn toml_errors_show_a_prefix_of_a_long_value() {
    let long = "x".repeat(1 << 20);
    let cases = [
        format!("mode = \"{long}\"\n"),
        format!("[offload]\ndevices = [\"{long}\"]\n"),
        format!("[offload]\nhardware = \"{long}\"\n"),
        format!("[offload]\ncounter = \"{long}\"\n"),
        format!("[offload]\nflush_on_firewall_change = \"{long}\"\n"),
        format!("[offload]\n{long} = 1\n"),
        format!("[[offload.exclude]]\nl4proto = \"{long}\"\n"),
        format!("[[offload.exclude]]\ndport = [\"{long}\"]\n"),
        format!("[[offload.exclude]]\nsaddr = [\"{long}\"]\n"),
        format!("[[offload.exclude]]\nmark = \"{long}\"\n"),
        format!("[[offload.exclude]]\niif = [\"{long}\"]\n"),
        format!("[conntrack]\nresync_interval = \"{long}\"\n"),
        format!("[timeouts]\ntcp = \"{long}\"\n"),
        format!("[metrics]\ntextfile = \"{long}\"\n"),
        format!("[metrics]\nlisten = \"{long}\"\n"),
        format!("[metrics]\ninterval = \"{long}\"\n"),
    ];
    for text in &cases {
        let e = parse_toml(text).unwrap_err();
        short(&text[..30], &e, long.len());
    }
}

#[test]
fn uci_errors_show_a_prefix_of_a_long_value() {
    // Values are capped at 4096 bytes by the reader; words outside values are not.
    let long = "x".repeat(4000);
    let fw = parse_uci(FIREWALL).unwrap();
    for text in [
        format!("config offload\n\toption mode '{long}'\n"),
        format!("config offload\n\toption hardware '{long}'\n"),
        format!("config offload\n\toption enabled '{long}'\n"),
        format!("config offload\n\tlist zone '{long}'\n"),
        format!("config offload\n\tlist device '{long}'\n"),
        format!("config offload\n\toption metrics_textfile '{long}'\n"),
        format!("config offload\n\nconfig exclude\n\tlist dport '{long}'\n"),
        format!("config offload\n\nconfig exclude\n\toption mark '{long}'\n"),
        format!("config offload\n\nconfig exclude\n\tlist src_zone '{long}'\n"),
    ] {
        let off = parse_uci(&text).unwrap();
        let (_, e) = from_uci(Some(&off), &fw, None).unwrap_err();
        short(&text[..40], &e, long.len());
    }
    let word = "x".repeat(1 << 20);
    let e = parse_uci(&format!("config offload\n{word} 'a'\n")).unwrap_err();
    short("keyword", &e, word.len());
}

#[test]
fn an_unknown_zone_lists_some_of_the_zones_there() {
    let zones: String = (0..10_000)
        .map(|i| format!("config zone\n\toption name 'z{i}'\n"))
        .collect();
    let fw = parse_uci(&zones).unwrap();
    let off = parse_uci("config offload\n\tlist zone 'nope'\n").unwrap();
    let (_, e) = from_uci(Some(&off), &fw, None).unwrap_err();
    assert!(e.message.len() < 500, "{} bytes", e.message.len());
    assert!(e.message.contains("10000 zones"), "{}", e.message);
}

/// CPU time this thread has used. Wall time counts the time the thread waited for a
/// CPU, which on a loaded 2-CPU machine (tests run in parallel) made a ratio of wall
/// times fail now and then; CPU time counts only the work.
fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec into the local we pass; the clock id is
    // a constant the kernel has had since 2.6.12.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime: {}", std::io::Error::last_os_error());
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// One linearity check at a time: they are the heaviest tests, and together they would
/// share the caches and memory bandwidth they measure.
static TIMED: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Times `small` and `big` (inputs 4 times apart) alternately, three rounds, and returns
/// the least CPU time of each: the least is what the work costs.
fn best_of_three(mut small: impl FnMut(), mut big: impl FnMut()) -> (Duration, Duration) {
    let _one = TIMED.lock().unwrap_or_else(|e| e.into_inner());
    let (mut s, mut b) = (Duration::MAX, Duration::MAX);
    for _ in 0..3 {
        let t = thread_cpu();
        small();
        s = s.min(thread_cpu() - t);
        let t = thread_cpu();
        big();
        b = b.min(thread_cpu() - t);
    }
    (s, b)
}

/// Linear work on 4 times the input takes about 4 times as long, quadratic 16 times;
/// 8 leaves room for a loaded machine and for the allocator's growth steps.
fn assert_linear(what: &str, (small, big): (Duration, Duration)) {
    eprintln!("{what}: n {small:?}, 4n {big:?}");
    assert!(
        big < small * 8 || big < Duration::from_millis(20),
        "{what}: n took {small:?}, 4n took {big:?} ({:.1}x): not linear",
        big.as_secs_f64() / small.as_secs_f64()
    );
}

#[test]
fn toml_parsing_is_linear_in_exclusions() {
    // 10k exclusions took 14 s: every line number was counted from byte 0.
    let text = |n: usize| -> String {
        (0..n)
            .map(|i| {
                format!(
                    "[[offload.exclude]]\nl4proto = \"tcp\"\ndport = [\"{}\"]\n",
                    1 + i
                )
            })
            .collect()
    };
    let (small, big) = (text(2000), text(8000));
    let times = best_of_three(
        || assert_eq!(parse_toml(&small).unwrap().offload.exclude.len(), 2000),
        || assert_eq!(parse_toml(&big).unwrap().offload.exclude.len(), 8000),
    );
    assert_linear("toml exclusions", times);
}

#[test]
fn uci_parsing_is_linear_in_named_sections_and_options() {
    // 100k named sections did not finish in 60 s (each name was looked up in a Vec of
    // the sections before it); 100k options of one section took 52 s.
    let sections = |n: usize| -> String {
        (0..n)
            .map(|i| {
                format!(
                    "config exclude 'e{i}'\n\toption dport '{}'\n",
                    1 + i % 60000
                )
            })
            .collect()
    };
    let (small, big) = (sections(5000), sections(20000));
    let times = best_of_three(
        || assert_eq!(parse_uci(&small).unwrap().sections.len(), 5000),
        || assert_eq!(parse_uci(&big).unwrap().sections.len(), 20000),
    );
    assert_linear("uci named sections", times);
    let options = |n: usize| -> String {
        let o: String = (0..n).map(|i| format!("\toption o{i} '1'\n")).collect();
        format!("config defaults\n{o}")
    };
    let (small, big) = (options(5000), options(20000));
    let times = best_of_three(
        || assert_eq!(parse_uci(&small).unwrap().sections[0].options.len(), 5000),
        || assert_eq!(parse_uci(&big).unwrap().sections[0].options.len(), 20000),
    );
    assert_linear("uci options", times);
}

#[test]
fn zones_resolve_in_time_linear_in_zones_and_interfaces() {
    // Each zone names its own interface: a lookup per network, a device set per zone.
    let files = |n: usize| {
        let fw: String = (0..n)
            .map(|i| format!("config zone\n\toption name 'z{i}'\n\tlist network 'n{i}'\n"))
            .collect();
        let net: String = (0..n)
            .map(|i| format!("config interface 'n{i}'\n\toption device 'd{i}'\n"))
            .collect();
        (parse_uci(&fw).unwrap(), parse_uci(&net).unwrap())
    };
    let ((fw_s, net_s), (fw_b, net_b)) = (files(2000), files(8000));
    let times = best_of_three(
        || {
            let cfg = from_uci(None, &fw_s, Some(&net_s)).unwrap();
            assert_eq!(cfg.offload.devices.len(), 2000);
        },
        || {
            let cfg = from_uci(None, &fw_b, Some(&net_b)).unwrap();
            assert_eq!(cfg.offload.devices.len(), 8000);
        },
    );
    assert_linear("uci zones", times);
}

#[test]
fn files_past_the_size_caps_are_refused_where_they_pass_them_unread() {
    use super::{load_toml, MAX_TOML_BYTES, MAX_UCI_BYTES};
    // Lines of 16 bytes: the cap falls inside line cap / 16 + 1.
    let dir = std::env::temp_dir().join(format!("offloadd-size-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let toml = dir.join("big.toml");
    let line = "# 0123456789abc\n";
    let text = format!("mode = \"auto\"\n{}", line.repeat(MAX_TOML_BYTES / 16 + 10));
    std::fs::write(&toml, &text).unwrap();
    let e = load_toml(&toml).unwrap_err().to_string();
    let want = format!(
        "{}:{}: ",
        toml.display(),
        1 + (MAX_TOML_BYTES - 14) / 16 + 1
    );
    assert!(e.starts_with(&want), "{e}");
    assert!(e.contains("larger than 1048576 bytes"), "{e}");
    // Exactly at the cap is read.
    std::fs::write(&toml, &text[..MAX_TOML_BYTES]).unwrap();
    assert!(load_toml(&toml).is_ok());
    let uci = "# 0123456789abc\n".repeat(MAX_UCI_BYTES / 16 + 1);
    std::fs::write(dir.join("firewall"), uci).unwrap();
    let e = load_uci(&dir).unwrap_err().to_string();
    let want = format!(
        "{}:{}: ",
        dir.join("firewall").display(),
        MAX_UCI_BYTES / 16 + 1
    );
    assert!(e.starts_with(&want), "{e}");
    std::fs::remove_dir_all(&dir).unwrap();
}
