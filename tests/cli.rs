//! The command line as a user runs it, without root.

use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_offloadd");

fn offloadd(args: &[&str]) -> (Option<i32>, String, String) {
    let out = Command::new(BIN)
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

#[test]
fn plan_prints_the_ruleset_of_the_example() {
    let (code, out, err) = offloadd(&["plan", "--config", "config/offloadd.toml"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("table inet offloadd {"), "{out}");
    assert!(
        out.contains("ct state established meta l4proto { tcp, udp } flow add @ft"),
        "{out}"
    );
    assert!(
        out.contains("meta l4proto udp ct original proto-dst 10000-20000 return"),
        "{out}"
    );
}

#[test]
fn plan_json_is_json() {
    let (code, out, _) = offloadd(&["plan", "--config", "config/offloadd.toml", "--json"]);
    assert_eq!(code, Some(0));
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["excludes"][0]["dport"], "5060");
    assert_eq!(v["flowtable"]["counter"], true);
}

#[test]
fn missing_config_is_exit_2_with_path() {
    let (code, _, err) = offloadd(&["plan", "--config", "/nonexistent/offloadd.toml"]);
    assert_eq!(code, Some(2));
    assert!(
        err.contains("/nonexistent/offloadd.toml: cannot read"),
        "{err}"
    );
    assert_eq!(
        err.matches("No such file").count(),
        1,
        "cause printed twice: {err}"
    );
}

#[test]
fn status_without_a_daemon_says_how_to_start_it() {
    let (code, _, err) = offloadd(&["--socket", "/nonexistent/offloadd.sock", "status"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("offloadd is not running (nothing answers on /nonexistent/offloadd.sock)"),
        "{err}"
    );
    assert!(err.contains("systemctl start offloadd"), "{err}");
}

#[test]
fn metrics_without_a_daemon_report_down() {
    let (code, out, err) = offloadd(&["--socket", "/nonexistent/offloadd.sock", "metrics"]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(
        out,
        "# HELP offloadd_up Whether the offloadd daemon answered.\n# TYPE offloadd_up gauge\noffloadd_up 0\n"
    );
    assert!(err.contains("offloadd is not running"), "{err}");
}

/// `offloadd plan | head -1` on a big config: the reader goes away while plan still
/// prints. The command must end quietly by SIGPIPE, as Unix tools do, not panic with
/// "failed printing to stdout: Broken pipe" (it did, and the cross tier's
/// `plan | grep -q` check failed on it once).
#[test]
fn plan_into_a_closed_pipe_ends_quietly() {
    use std::io::Read;
    use std::os::unix::process::ExitStatusExt;
    let dir = std::env::temp_dir().join(format!("offloadd-pipe-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = dir.join("big.toml");
    let mut toml = String::from("[offload]\ndevices = [\"lo\"]\n");
    for port in 1000..4000 {
        toml.push_str(&format!(
            "[[offload.exclude]]\nl4proto = \"udp\"\ndport = [\"{port}\"]\n"
        ));
    }
    std::fs::write(&cfg, toml).unwrap();
    let mut child = Command::new(BIN)
        .args(["plan", "--config"])
        .arg(&cfg)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = [0u8; 16];
    child.stdout.take().unwrap().read_exact(&mut first).unwrap();
    // The pipe's read end is closed now; plan has far more than a pipe buffer to print.
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    let status = child.wait().unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(status.signal(), Some(libc::SIGPIPE), "{status:?}: {err}");
}

/// A stand-in daemon that answers one request with `answer`, on a socket of its own.
fn fake_daemon(answer: &'static str) -> std::path::PathBuf {
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let path = std::env::temp_dir().join(format!("offloadd-cli-{}-{n}.sock", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
    std::thread::spawn(move || {
        use std::io::{BufRead, Write};
        let (s, _) = listener.accept().unwrap();
        let mut req = String::new();
        std::io::BufReader::new(&s).read_line(&mut req).unwrap();
        let _ = (&s).write_all(answer.as_bytes());
    });
    path
}

#[test]
fn a_streamed_flow_list_is_complete_only_with_its_end_mark() {
    use offloadd::control::{stream_flow_lines, ClientError};
    let path = fake_daemon("{\"proto\":6}\n{\"proto\":17}\n{\"end\":2}\n");
    let mut lines = Vec::new();
    let n = stream_flow_lines(&path, None, |l| {
        lines.push(l.to_string());
        true
    })
    .unwrap();
    let _ = std::fs::remove_file(&path);
    assert_eq!((n, lines.len()), (2, 2));
    assert_eq!(lines[1], "{\"proto\":17}", "passed on as sent");
    // The daemon stopped half way: no end mark.
    let path = fake_daemon("{\"proto\":6}\n");
    match stream_flow_lines(&path, None, |_| true) {
        Err(ClientError::Daemon(m)) => assert!(m.contains("without its end mark"), "{m}"),
        other => panic!("{other:?}"),
    }
    let _ = std::fs::remove_file(&path);
    // An error answer is the daemon's error, not a flow.
    let path = fake_daemon("{\"error\":\"the conntrack watcher stopped\"}\n");
    match stream_flow_lines(&path, None, |_| true) {
        Err(ClientError::Daemon(m)) => assert_eq!(m, "the conntrack watcher stopped"),
        other => panic!("{other:?}"),
    }
    let _ = std::fs::remove_file(&path);
}
