//! Helpers for the root-only tiers: throwaway network namespaces.
#![allow(dead_code)]

use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};

/// Root-only tests are `#[ignore]`d, so a plain `cargo test` lists them as ignored
/// instead of passing them unrun; tests/run.sh runs them as root with
/// `--include-ignored`. Asked for without root, they fail here and say why.
pub fn require_root() {
    // SAFETY: geteuid has no preconditions.
    assert!(
        unsafe { libc::geteuid() } == 0,
        "this test needs root (network namespaces, nf_tables): sudo tests/run.sh, or sudo cargo test -- --include-ignored"
    );
}

/// A network namespace the test owns; deleted on drop.
pub struct Netns {
    pub name: String,
}

static COUNTER: AtomicUsize = AtomicUsize::new(0);

impl Netns {
    pub fn new() -> Netns {
        let name = format!(
            "offloadd-t{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::SeqCst)
        );
        let ok = Command::new("ip")
            .args(["netns", "add", &name])
            .status()
            .expect("ip")
            .success();
        assert!(ok, "ip netns add {name} failed");
        let ns = Netns { name };
        ns.sh("ip link set lo up");
        ns
    }

    /// Runs a program inside the namespace.
    pub fn run(&self, program: &str, args: &[&str]) -> Output {
        Command::new("ip")
            .args(["netns", "exec", &self.name, program])
            .args(args)
            .output()
            .expect("ip netns exec")
    }

    /// Runs a shell command inside the namespace and asserts it succeeded.
    pub fn sh(&self, script: &str) -> String {
        let out = self.run("sh", &["-c", script]);
        assert!(
            out.status.success(),
            "`{script}` failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub fn ruleset(&self) -> String {
        self.sh("nft list ruleset")
    }

    /// Runs `f` on a thread that has joined this namespace (see `enter`).
    pub fn enter<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        std::thread::spawn({
            let name = self.name.clone();
            move || enter(&name, f)
        })
        .join()
        .expect("netns thread panicked")
    }
}

/// Moves the calling thread into namespace `name` and runs `f` there, so every netlink
/// socket `f` opens talks to that namespace's kernel state and never to the host's.
/// Only for threads that end afterwards.
pub fn enter<T>(name: &str, f: impl FnOnce() -> T) -> T {
    let file = std::fs::File::open(format!("/run/netns/{name}")).expect("open netns");
    use std::os::fd::AsRawFd;
    // SAFETY: setns affects this thread only; the fd is a valid netns file.
    let r = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
    assert_eq!(r, 0, "setns: {}", std::io::Error::last_os_error());
    f()
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// A stand-in for fw4's table, to prove other tables are never touched.
pub const FW4: &str = "table inet fw4 {
    chain forward { type filter hook forward priority filter; policy accept; tcp dport 9 drop; }
}
";

/// `offloadd run` inside a namespace, with its own control socket; stopped on drop.
pub struct Daemon {
    pub child: std::process::Child,
    pub socket: std::path::PathBuf,
    pub dir: std::path::PathBuf,
}

impl Daemon {
    /// Starts the daemon with `toml` as its config and waits until its socket answers.
    pub fn start(ns: &Netns, bin: &str, toml: &str) -> Daemon {
        let dir = std::env::temp_dir().join(format!("offloadd-d-{}", ns.name));
        std::fs::create_dir_all(&dir).unwrap();
        let config = dir.join("offloadd.toml");
        std::fs::write(&config, toml).unwrap();
        let socket = dir.join("offloadd.sock");
        let child = Command::new("ip")
            .args(["netns", "exec", &ns.name, bin, "--socket"])
            .arg(&socket)
            .args(["run", "--config"])
            .arg(&config)
            .stderr(std::process::Stdio::inherit())
            .spawn()
            .expect("spawn offloadd");
        let d = Daemon { child, socket, dir };
        for _ in 0..100 {
            if d.cli(bin, &["status", "--json"]).status.success() {
                return d;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        panic!(
            "offloadd did not answer on {} within 5 s",
            d.socket.display()
        );
    }

    /// Runs `offloadd --socket <ours> args...` from the host namespace (the socket is a
    /// file, so it reaches the daemon wherever it runs).
    pub fn cli(&self, bin: &str, args: &[&str]) -> Output {
        Command::new(bin)
            .arg("--socket")
            .arg(&self.socket)
            .args(args)
            .output()
            .expect("offloadd")
    }

    pub fn status(&self, bin: &str) -> serde_json::Value {
        let out = self.cli(bin, &["status", "--json"]);
        assert!(
            out.status.success(),
            "status: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("status JSON")
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        // SAFETY: kill with a valid pid of our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Runs `f` inside namespace `name` on a fresh thread and waits for it.
pub fn enter_thread<T: Send + 'static>(name: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let name = name.to_owned();
    std::thread::spawn(move || enter(&name, f))
        .join()
        .expect("netns thread panicked")
}

/// The plan of `toml` with no devices and without the flowtable: what the host kernel
/// (no flowtables) accepts.
pub fn desired(toml: &str) -> offloadd::plan::Desired {
    let cfg = offloadd::config::parse_toml(toml).unwrap();
    offloadd::plan::plan(
        &cfg,
        &offloadd::plan::Inputs::links(&offloadd::link::LinkSnapshot::default()),
    )
    .map(|p| p.ruleset)
    .unwrap()
    .without_flowtable()
}
