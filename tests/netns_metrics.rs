//! Netns tier: the metrics the daemon publishes itself (`[metrics]`). A daemon (observe
//! mode) in a namespace writes a textfile and serves `/metrics` on the namespace's
//! loopback. A real Prometheus (Debian's, unpacked into /opt/offloadd-prometheus by
//! tests/setup.sh, never installed) scrapes it inside the same namespace; its query for
//! flows per path must return the daemon's own numbers, promtool must accept both
//! outputs, and a reader of the textfile must never see half of one.

mod common;

use std::io::{Read, Write};
use std::net::{TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{require_root, Daemon, Netns};

const BIN: &str = env!("CARGO_BIN_EXE_offloadd");
const PROM: &str = "/opt/offloadd-prometheus/usr/bin";
const FLOWS: u16 = 40;

/// Conntrack only tracks a namespace once some rule needs it. The scrapes are not
/// tracked: each is a TCP connection that would add a flow to the counts it reads.
const TRACKING: &str = "table inet t {
    chain raw { type filter hook output priority raw; tcp dport { 9090, 9811 } notrack; tcp sport { 9090, 9811 } notrack; }
    chain out { type filter hook output priority 0; ct state new counter; }
}
";

fn tool(name: &str) -> PathBuf {
    let p = Path::new(PROM).join(name);
    assert!(
        p.exists(),
        "{} is missing: tests/setup.sh unpacks Debian's prometheus package there",
        p.display()
    );
    p
}

/// One HTTP exchange with the daemon inside `ns`; the whole answer.
fn http(ns: &Netns, request: &'static str) -> String {
    ns.enter(move || {
        let mut s = TcpStream::connect(("127.0.0.1", 9811)).expect("connect to the metrics port");
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(request.as_bytes()).unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    })
}

/// `promtool check metrics` on `text`: its exit status and what it said.
fn promtool_check(text: &str) -> (bool, String) {
    let mut c = Command::new(tool("promtool"))
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    c.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = c.wait_with_output().unwrap();
    let said =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), said)
}

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
#[ignore = "root and network namespaces: tests/run.sh runs it (cargo test -- --include-ignored)"]
fn prometheus_scrapes_the_daemons_numbers_and_the_textfile_is_never_half_written() {
    require_root();
    let (prometheus, _) = (tool("prometheus"), tool("promtool"));
    let ns = Netns::new();
    ns.sh(&format!("nft -f - <<'EOF'\n{TRACKING}EOF"));
    // Unreplied UDP entries live 30 s by default; these must outlast the test.
    ns.sh("sysctl -qw net.netfilter.nf_conntrack_udp_timeout=600");
    let dir = std::env::temp_dir().join(format!("offloadd-metrics-{}", ns.name));
    std::fs::create_dir_all(&dir).unwrap();
    let textfile = dir.join("offloadd.prom");
    let d = Daemon::start(
        &ns,
        BIN,
        &format!(
            "mode = \"observe\"\n[offload]\ndevices = [\"lo\"]\n[metrics]\ntextfile = \"{}\"\nlisten = \"127.0.0.1:9811\"\ninterval = \"100ms\"\n",
            textfile.display()
        ),
    );
    ns.enter(|| {
        let s = UdpSocket::bind(("127.0.0.1", 0)).unwrap();
        for port in 0..FLOWS {
            s.send_to(b"x", ("127.0.0.1", 20000 + port)).unwrap();
        }
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    let slow = loop {
        let st = d.status(BIN);
        let slow = st["conntrack"]["slow"].as_u64().unwrap_or(0);
        if slow >= u64::from(FLOWS) || Instant::now() > deadline {
            break slow;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(
        slow,
        u64::from(FLOWS),
        "status counts {slow} slow flows, {FLOWS} were opened"
    );

    // HTTP: /metrics and HEAD answer with the exposition format; anything else does not.
    let answer = http(&ns, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
    let (head, body) = answer.split_once("\r\n\r\n").expect("an HTTP answer");
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    assert!(
        head.contains("Content-Type: text/plain; version=0.0.4"),
        "{head}"
    );
    assert!(body.lines().any(|l| l == "offloadd_up 1"), "{body}");
    let (ok, said) = promtool_check(body);
    assert!(
        ok,
        "promtool check metrics on the HTTP body: {said}\n{body}"
    );
    let missing = http(&ns, "GET /other HTTP/1.1\r\n\r\n");
    assert!(missing.starts_with("HTTP/1.1 404 "), "{missing}");
    let post = http(&ns, "POST /metrics HTTP/1.1\r\n\r\n");
    assert!(post.starts_with("HTTP/1.1 405 "), "{post}");

    // The textfile, read as fast as possible while the daemon replaces it every 100 ms:
    // every read is one whole exposition (its first and last metric, its end of line).
    let first = std::fs::read_to_string(&textfile).expect("the textfile exists");
    let (ok, said) = promtool_check(&first);
    assert!(
        ok,
        "promtool check metrics on the textfile: {said}\n{first}"
    );
    let last_line = first.lines().last().unwrap().to_string();
    let last_name = last_line.split(' ').next().unwrap().to_string();
    let (mut reads, mut versions, mut seen) = (0, 0, std::collections::HashSet::new());
    let until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < until {
        let text = std::fs::read_to_string(&textfile).unwrap();
        let whole = text.starts_with("# HELP offloadd_up ")
            && text.ends_with('\n')
            && text
                .lines()
                .last()
                .is_some_and(|l| l.starts_with(&last_name));
        assert!(
            whole,
            "read {reads} saw a partial textfile ({} bytes):\n{text}",
            text.len()
        );
        if seen.insert(std::fs::metadata(&textfile).unwrap().modified().unwrap()) {
            versions += 1;
        }
        reads += 1;
    }
    assert!(
        versions >= 10,
        "only {versions} versions of the textfile in 3 s at a 100 ms interval ({reads} reads)"
    );
    let prom_files: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".prom"))
        .collect();
    assert_eq!(
        prom_files,
        ["offloadd.prom"],
        "only our file is collectable"
    );

    // A real Prometheus scrapes the daemon; its answer for slow flows is the daemon's.
    let prom_cfg = dir.join("prometheus.yml");
    std::fs::write(
        &prom_cfg,
        "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: offloadd\n    static_configs:\n      - targets: ['127.0.0.1:9811']\n",
    )
    .unwrap();
    let _prom = Killed(
        Command::new("ip")
            .args(["netns", "exec", &ns.name])
            .arg(&prometheus)
            .arg(format!("--config.file={}", prom_cfg.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .args(["--web.listen-address=127.0.0.1:9090", "--log.level=warn"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start prometheus"),
    );
    // Every path's series: one answer line each, `offloadd_flows{..., path="sw"} => N @[t]`.
    let query = "offloadd_flows{job=\"offloadd\"}";
    let deadline = Instant::now() + Duration::from_secs(60);
    let said = loop {
        let out = ns.run(
            tool("promtool").to_str().unwrap(),
            &["query", "instant", "http://127.0.0.1:9090", query],
        );
        let said = String::from_utf8_lossy(&out.stdout).into_owned();
        if said.matches("=>").count() >= 3 || Instant::now() > deadline {
            break said;
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    let scraped = |path: &str| -> Option<u64> {
        let line = said
            .lines()
            .find(|l| l.contains(&format!("path=\"{path}\"")))?;
        line.split("=>")
            .nth(1)?
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    };
    let st = d.status(BIN);
    let now = |path: &str| st["conntrack"][path].as_u64();
    let got: Vec<_> = ["slow", "sw", "hw"]
        .iter()
        .map(|p| (scraped(p), now(p)))
        .collect();
    assert_eq!(
        got,
        [(Some(slow), Some(slow)), (Some(0), Some(0)), (Some(0), Some(0))],
        "Prometheus answered {said:?} for {query} (scraped, status now) per path; status said {slow} slow before"
    );

    // A daemon that stops leaves the textfile saying so.
    drop(d);
    let after = std::fs::read_to_string(&textfile).unwrap();
    assert_eq!(
        after
            .lines()
            .filter(|l| !l.starts_with('#'))
            .collect::<Vec<_>>(),
        ["offloadd_up 0"],
        "{after}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The alert rules README shows are valid and fire as it says (promtool's rule tests on
/// series of a router with offload on and nothing offloaded).
#[test]
#[ignore = "root and network namespaces: tests/run.sh runs it (cargo test -- --include-ignored)"]
fn readme_alert_rules_fire_as_documented() {
    require_root();
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let start = readme
        .find("```yaml\ngroups:")
        .expect("README shows alert rules")
        + "```yaml\n".len();
    let rules = &readme[start..start + readme[start..].find("```").unwrap()];
    let dir = std::env::temp_dir().join(format!("offloadd-rules-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("rules.yml"), rules).unwrap();
    let fixture = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/prometheus/readme-alerts-test.yml"
    );
    std::fs::copy(fixture, dir.join("test.yml")).unwrap();
    let out = Command::new(tool("promtool"))
        .args(["test", "rules", "test.yml"])
        .current_dir(&dir)
        .output()
        .unwrap();
    let said =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(out.status.success(), "promtool test rules: {said}\n{rules}");
}
