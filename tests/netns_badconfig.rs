//! Netns tier: every malformed config of the corpus (tests/fixtures/bad-toml and
//! tests/fixtures/uci/bad) makes `offloadd run` exit 2 with one `file:line` line, before
//! it touches the kernel: the namespace's ruleset is byte-identical afterwards.

mod common;

use std::path::{Path, PathBuf};

use common::{require_root, Netns, FW4};

const BIN: &str = env!("CARGO_BIN_EXE_offloadd");

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    v.sort();
    v
}

/// Runs the daemon on one bad config; returns (exit code, stderr).
fn run(ns: &Netns, args: &[&str]) -> (Option<i32>, String) {
    let sock = std::env::temp_dir().join(format!("offloadd-bad-{}.sock", std::process::id()));
    let mut all = vec!["--socket", sock.to_str().unwrap(), "run"];
    all.extend_from_slice(args);
    let out = ns.run(BIN, &all);
    assert!(!sock.exists(), "control socket left behind");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
#[ignore = "root and network namespaces: tests/run.sh runs it (cargo test -- --include-ignored)"]
fn every_bad_config_exits_2_with_one_line_and_changes_nothing() {
    require_root();
    let ns = Netns::new();
    ns.sh("ip link add lan0 type veth peer name lan0p");
    ns.sh(&format!("nft -f - <<'EOF'\n{FW4}EOF"));
    let before = ns.ruleset();
    let mut count = 0;
    for f in files(&fixtures().join("bad-toml")) {
        let (code, err) = run(&ns, &["--config", f.to_str().unwrap()]);
        assert_eq!(code, Some(2), "{}: {err}", f.display());
        let prefix = format!("offloadd: {}:", f.display());
        assert!(err.starts_with(&prefix), "{}: {err}", f.display());
        assert_eq!(err.trim_end().lines().count(), 1, "{err}");
        count += 1;
    }
    // UCI: each bad /etc/config/offloadd next to valid firewall and network files.
    let dir = std::env::temp_dir().join(format!("offloadd-bad-uci-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for f in ["firewall", "network"] {
        std::fs::copy(fixtures().join("uci/defaults").join(f), dir.join(f)).unwrap();
    }
    for f in files(&fixtures().join("uci/bad")) {
        std::fs::copy(&f, dir.join("offloadd")).unwrap();
        let (code, err) = run(&ns, &["--uci-dir", dir.to_str().unwrap()]);
        assert_eq!(code, Some(2), "{}: {err}", f.display());
        let prefix = format!("offloadd: {}/offloadd:", dir.display());
        assert!(err.starts_with(&prefix), "{}: {err}", f.display());
        assert_eq!(err.trim_end().lines().count(), 1, "{err}");
        count += 1;
    }
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(count >= 40, "{count} files");
    assert_eq!(ns.ruleset(), before, "a bad config changed the ruleset");
}
