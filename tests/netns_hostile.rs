//! Netns tier: the daemon (observe mode, in a namespace of its own) against a hostile
//! local user and a flood of root's own clients (issue 26):
//! - a user who owns the metrics textfile's directory plants a symlink to a root-only
//!   file at the target's name and at the temporary name the daemon used to write
//!   through, then a FIFO: the root-only file is unchanged, the daemon logs and shows the
//!   refusal, `status` answers within 100 ms, SIGTERM ends it within 2 s;
//! - `[metrics]` reloaded five times (listen changed, unchanged, other fields changed):
//!   each time `/metrics` answers;
//! - 2,000 idle control connections against a daemon limited to 1,024 descriptors (as
//!   procd starts it): a new `status` still answers within 100 ms.
//!
//! Every wait is on the daemon's own log line, and each check prints what it measured.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{require_root, Netns};

const BIN: &str = env!("CARGO_BIN_EXE_offloadd");
const NOBODY: u32 = 65534;

/// `offloadd run` in `ns` with its log in a file, so a test waits on what it says.
struct Logged {
    child: Child,
    dir: PathBuf,
    socket: PathBuf,
    config: PathBuf,
    log: PathBuf,
}

impl Logged {
    fn start(ns: &Netns, tag: &str, toml: &str) -> Logged {
        let dir = std::env::temp_dir().join(format!("offloadd-hostile-{tag}-{}", ns.name));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let config = dir.join("offloadd.toml");
        std::fs::write(&config, toml).unwrap();
        let (socket, log) = (dir.join("offloadd.sock"), dir.join("log"));
        // 1,024 descriptors: procd's default for a service, and what made idle clients
        // starve the accept loop before the cap.
        let child = Command::new("ip")
            .args([
                "netns",
                "exec",
                &ns.name,
                "prlimit",
                "--nofile=1024:1024",
                BIN,
            ])
            .arg("--socket")
            .arg(&socket)
            .args(["run", "--config"])
            .arg(&config)
            .stderr(std::fs::File::create(&log).unwrap())
            .stdout(Stdio::null())
            .spawn()
            .expect("spawn offloadd");
        let d = Logged {
            child,
            dir,
            socket,
            config,
            log,
        };
        d.wait_log("observing", 1, Duration::from_secs(10));
        d
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until `needle` is in the log `count` times; the log so far.
    fn wait_log(&self, needle: &str, count: usize, within: Duration) -> String {
        let deadline = Instant::now() + within;
        loop {
            let log = self.log();
            if log.matches(needle).count() >= count {
                return log;
            }
            assert!(
                Instant::now() < deadline,
                "{needle:?} not {count} times in the daemon's log within {within:?}:\n{log}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// One request over the control socket, timed from connect to the answer's end.
    fn ask(&self, request: &str) -> (Duration, String) {
        let t = Instant::now();
        let mut s = UnixStream::connect(&self.socket).expect("connect to the control socket");
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(format!("{request}\n").as_bytes()).unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        (t.elapsed(), out)
    }

    fn sighup(&self) {
        // SAFETY: kill with the pid of our own child (`ip netns exec` execs the daemon).
        assert_eq!(
            unsafe { libc::kill(self.child.id() as i32, libc::SIGHUP) },
            0
        );
    }

    /// SIGTERM, then how long until the process was gone, and its exit status.
    fn stop(&mut self) -> (Duration, Option<i32>) {
        let t = Instant::now();
        // SAFETY: as above.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        while t.elapsed() < Duration::from_secs(10) {
            if let Some(st) = self.child.try_wait().unwrap() {
                return (t.elapsed(), st.code());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        (t.elapsed(), None)
    }
}

impl Drop for Logged {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Runs `script` as the unprivileged user `nobody`, as an attacker would.
fn as_nobody(script: &str) {
    let out = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "sh",
            "-c",
            script,
        ])
        .output()
        .expect("setpriv");
    assert!(
        out.status.success(),
        "as nobody: `{script}`: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
#[ignore = "root and network namespaces: tests/run.sh runs it (cargo test -- --include-ignored)"]
fn textfile_traps_change_nothing_and_leave_the_daemon_responsive() {
    require_root();
    let ns = Netns::new();
    let base = std::env::temp_dir().join(format!("offloadd-trap-{}", ns.name));
    let _ = std::fs::remove_dir_all(&base);
    let prom = base.join("prom");
    std::fs::create_dir_all(&prom).unwrap();
    std::fs::set_permissions(&base, std::fs::Permissions::from_mode(0o755)).unwrap();
    // The exporter's directory: owned by another user, as node_exporter's often is.
    std::os::unix::fs::chown(&prom, Some(NOBODY), Some(NOBODY)).unwrap();
    let victim = base.join("victim");
    std::fs::write(&victim, "root only\n").unwrap();
    std::fs::set_permissions(&victim, std::fs::Permissions::from_mode(0o600)).unwrap();
    let target = prom.join("offloadd.prom");
    as_nobody(&format!("ln -s {} {}", victim.display(), target.display()));
    let mut d = Logged::start(
        &ns,
        "trap",
        &format!(
            "mode = \"observe\"\n[offload]\ndevices = []\n[metrics]\ntextfile = \"{}\"\ninterval = \"100ms\"\n",
            target.display()
        ),
    );
    // The name the daemon wrote through before this fix, planted as soon as its pid is
    // known: an open that followed it would overwrite the root-only file.
    as_nobody(&format!(
        "ln -s {} {}/.offloadd.prom.{}.tmp",
        victim.display(),
        prom.display(),
        d.child.id()
    ));
    let log = d.wait_log("symbolic link", 1, Duration::from_secs(5));
    assert!(
        log.contains("cannot write the metrics textfile"),
        "the refusal is logged as a textfile problem:\n{log}"
    );
    let (took, answer) = d.ask(r#"{"request":"status"}"#);
    let st: serde_json::Value = serde_json::from_str(&answer).expect("status JSON");
    let shown = st["metrics_errors"].to_string();
    assert!(
        shown.contains("symbolic link") && took < Duration::from_millis(100),
        "status took {took:?} and shows metrics_errors {shown}"
    );

    as_nobody(&format!("rm {t} && mkfifo {t}", t = target.display()));
    d.wait_log("a FIFO", 1, Duration::from_secs(5));
    let (took, answer) = d.ask(r#"{"request":"status"}"#);
    assert!(
        answer.contains("a FIFO") && took < Duration::from_millis(100),
        "status took {took:?}: {answer}"
    );
    let (stopped, code) = d.stop();
    assert!(
        stopped < Duration::from_secs(2) && code == Some(0),
        "SIGTERM: gone after {stopped:?} with exit code {code:?}; log:\n{}",
        d.log()
    );
    let meta = std::fs::metadata(&victim).unwrap();
    assert_eq!(
        (
            std::fs::read_to_string(&victim).unwrap(),
            meta.mode() & 0o7777,
            meta.uid()
        ),
        ("root only\n".to_string(), 0o600, 0),
        "the root-only file was changed"
    );
    let pid = d.child.id();
    assert_eq!(
        names(&prom),
        [format!(".offloadd.prom.{pid}.tmp"), "offloadd.prom".into()],
        "only the attacker's two names are in the directory: no temporary file was left"
    );
    let _ = std::fs::remove_dir_all(&base);
}

/// One GET /metrics on 127.0.0.1:`port` inside `ns`: the status line and whether the
/// body says the daemon is up.
fn scrape(ns: &Netns, port: u16) -> String {
    ns.enter(move || {
        let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
            return format!("connection to port {port} refused");
        };
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        out
    })
}

#[test]
#[ignore = "root and network namespaces: tests/run.sh runs it (cargo test -- --include-ignored)"]
fn metrics_reloaded_five_times_answers_after_each() {
    require_root();
    let ns = Netns::new();
    let config = |port: u16, interval: &str| {
        format!("mode = \"observe\"\n[offload]\ndevices = []\n[metrics]\nlisten = \"127.0.0.1:{port}\"\ninterval = \"{interval}\"\n")
    };
    let d = Logged::start(&ns, "reload", &config(9811, "1s"));
    d.wait_log("serving metrics", 1, Duration::from_secs(5));
    // Listen unchanged but another field changed (what lost the port before: the new
    // listener was bound while the old one was still open), changed, back, unchanged.
    let steps = [
        (9811, "2s"),
        (9812, "2s"),
        (9812, "1s"),
        (9811, "1s"),
        (9811, "1s"),
    ];
    for (i, (port, interval)) in steps.into_iter().enumerate() {
        std::fs::write(&d.config, config(port, interval)).unwrap();
        d.sighup();
        let log = d.wait_log("config reloaded", i + 1, Duration::from_secs(10));
        let answer = scrape(&ns, port);
        assert!(
            answer.starts_with("HTTP/1.1 200") && answer.contains("offloadd_up 1"),
            "reload {} (listen 127.0.0.1:{port}, interval {interval}): {:?}\nlog:\n{log}",
            i + 1,
            answer.lines().next()
        );
        assert!(!log.contains("cannot serve metrics"), "{log}");
    }
}

/// A non-blocking connect: `None` when the listen queue was full (EAGAIN).
fn connect_nonblocking(path: &Path) -> Option<std::os::fd::OwnedFd> {
    use std::os::fd::FromRawFd;
    use std::os::unix::ffi::OsStrExt;
    // SAFETY: plain socket(2); the fd is owned by the OwnedFd below.
    let fd = unsafe { libc::socket(libc::AF_UNIX, libc::SOCK_STREAM | libc::SOCK_NONBLOCK, 0) };
    assert!(fd >= 0, "socket: {}", std::io::Error::last_os_error());
    // SAFETY: fd is a fresh descriptor nobody else owns.
    let owned = unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) };
    // SAFETY: an all-zero sockaddr_un is valid; the path fits (checked below).
    let mut addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
    let bytes = path.as_os_str().as_bytes();
    assert!(bytes.len() < addr.sun_path.len());
    for (d, s) in addr.sun_path.iter_mut().zip(bytes) {
        *d = *s as libc::c_char;
    }
    // SAFETY: addr is a valid sockaddr_un of the given size.
    let rc = unsafe {
        libc::connect(
            fd,
            &addr as *const _ as *const libc::sockaddr,
            std::mem::size_of::<libc::sockaddr_un>() as libc::socklen_t,
        )
    };
    (rc == 0).then_some(owned)
}

#[test]
#[ignore = "root and network namespaces: tests/run.sh runs it (cargo test -- --include-ignored)"]
fn two_thousand_idle_control_clients_do_not_hold_up_status() {
    require_root();
    // This process holds the 2,000 connections: room for them.
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit with a valid struct.
    unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
        lim.rlim_cur = lim.rlim_max.min(8192).max(lim.rlim_cur);
        libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
    }
    let ns = Netns::new();
    let d = Logged::start(&ns, "idle", "mode = \"observe\"\n[offload]\ndevices = []\n");
    let mut held = Vec::new();
    let mut queue_full = 0;
    for _ in 0..2000 {
        match connect_nonblocking(&d.socket) {
            Some(fd) => held.push(fd),
            None => {
                queue_full += 1;
                std::thread::sleep(Duration::from_millis(1));
            }
        }
    }
    let (took, answer) = d.ask(r#"{"request":"status"}"#);
    assert!(
        answer.contains("\"role\":\"observe\"") && took < Duration::from_millis(100),
        "with {} idle connections opened ({queue_full} found the queue full), status took {took:?}: {}",
        held.len(),
        answer.chars().take(200).collect::<String>()
    );
    drop(held);
}

#[test]
#[ignore = "root and network namespaces: tests/run.sh runs it (cargo test -- --include-ignored)"]
fn idle_http_connections_get_busy_answers_not_the_scraper_s_timeout() {
    require_root();
    let ns = Netns::new();
    let d = Logged::start(
        &ns,
        "http",
        "mode = \"observe\"\n[offload]\ndevices = []\n[metrics]\nlisten = \"127.0.0.1:9813\"\n",
    );
    d.wait_log("serving metrics", 1, Duration::from_secs(5));
    let (took, first) = ns.enter(|| {
        // Eight connections that never send a request hold every slot ...
        let idle: Vec<TcpStream> = (0..offloadd::publish::MAX_CLIENTS)
            .map(|_| TcpStream::connect(("127.0.0.1", 9813)).unwrap())
            .collect();
        std::thread::sleep(Duration::from_millis(200));
        // ... and a scraper is told so at once, not after their 2 s deadline.
        let t = Instant::now();
        let mut s = TcpStream::connect(("127.0.0.1", 9813)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let _ = s.write_all(b"GET /metrics HTTP/1.1\r\n\r\n");
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        drop(idle);
        (
            t.elapsed(),
            out.lines().next().unwrap_or_default().to_string(),
        )
    });
    assert!(
        first.starts_with("HTTP/1.1 503") && took < Duration::from_millis(500),
        "with every slot idle the scraper got {first:?} after {took:?}"
    );
    // Once the idle ones are gone, scrapes are served again.
    let answer = scrape(&ns, 9813);
    assert!(
        answer.starts_with("HTTP/1.1 200"),
        "{:?}",
        answer.lines().next()
    );
}
