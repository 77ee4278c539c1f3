//! The OpenWrt package and the systemd unit: the procd init script against a stand-in
//! for rc.common/procd, the rpcd plugin, the default UCI file, and the unit file.

use std::path::PathBuf;
use std::process::Command;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn files() -> PathBuf {
    repo().join("openwrt-package/files")
}

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// A tool the test needs: None (skip with a message) when absent outside CI.
fn tool(name: &str) -> Option<()> {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {name}")])
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        assert!(!in_ci(), "{name} is missing; tests/setup.sh installs it");
        eprintln!("skipped: {name} not installed");
        return None;
    }
    Some(())
}

/// Sources the init script after stand-ins for the procd helpers that record each call,
/// then runs the rc.common entry points a `/etc/init.d/offloadd start|reload` would.
const HARNESS: &str = r#"
calls() { printf '%s\n' "$*" >>"$LOG"; }
procd_open_instance() { calls open_instance "$@"; }
procd_set_param() { calls set_param "$@"; }
procd_close_instance() { calls close_instance; }
procd_add_reload_trigger() { calls reload_trigger "$@"; }
procd_send_signal() { calls send_signal "$@"; }
. "$INIT"
start_service
service_triggers
reload_service
calls START="$START" STOP="$STOP" USE_PROCD="$USE_PROCD"
"#;

#[test]
fn init_script_declares_the_instance_and_reload_sends_sighup() {
    let init = files().join("offloadd.init");
    let ok = Command::new("sh")
        .arg("-n")
        .arg(&init)
        .status()
        .unwrap()
        .success();
    assert!(ok, "sh -n {}", init.display());
    let log = std::env::temp_dir().join(format!("offloadd-procd-{}.log", std::process::id()));
    let _ = std::fs::remove_file(&log);
    let out = Command::new("sh")
        .args(["-c", HARNESS])
        .env("INIT", &init)
        .env("LOG", &log)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let calls = std::fs::read_to_string(&log).unwrap();
    std::fs::remove_file(&log).unwrap();
    let want = [
        "open_instance",
        "set_param command /usr/sbin/offloadd run",
        "set_param respawn 3600 5 5",
        "set_param stdout 1",
        "set_param stderr 1",
        "set_param file /etc/config/offloadd /etc/config/firewall /etc/config/network",
        "close_instance",
        "reload_trigger offloadd firewall network",
        "send_signal offloadd * HUP",
        "START=99 STOP=10 USE_PROCD=1",
    ];
    let got: Vec<&str> = calls.lines().collect();
    assert_eq!(got, want);
}

#[test]
fn init_and_rpcd_scripts_pass_shellcheck() {
    if tool("shellcheck").is_none() {
        return;
    }
    for f in ["offloadd.init", "offloadd.rpcd"] {
        // SC2034: START/STOP/USE_PROCD are read by rc.common, not by the script.
        let out = Command::new("shellcheck")
            .args(["-s", "sh", "-e", "SC2034"])
            .arg(files().join(f))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{f}: {}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
}

fn rpcd(args: &[&str]) -> serde_json::Value {
    let sock = std::env::temp_dir().join(format!("offloadd-rpcd-{}.sock", std::process::id()));
    let out = Command::new("sh")
        .arg(files().join("offloadd.rpcd"))
        .args(args)
        .env("OFFLOADD", env!("CARGO_BIN_EXE_offloadd"))
        .env("OFFLOADD_SOCKET", &sock)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{args:?}: not JSON ({e}): {text}"))
}

#[test]
fn rpcd_plugin_answers_ubus_in_json() {
    let list = rpcd(&["list"]);
    assert!(
        list.get("status").is_some() && list.get("flows").is_some(),
        "{list}"
    );
    // No daemon on the socket: ubus still gets JSON, saying so.
    let status = rpcd(&["call", "status"]);
    assert_eq!(status["error"], "offloadd is not running", "{status}");
}

#[test]
fn default_uci_config_is_valid_with_openwrt_defaults() {
    let dir = std::env::temp_dir().join(format!("offloadd-uci-default-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let fixtures = repo().join("tests/fixtures/uci/defaults");
    for f in ["firewall", "network"] {
        std::fs::copy(fixtures.join(f), dir.join(f)).unwrap();
    }
    std::fs::copy(files().join("offloadd.config"), dir.join("offloadd")).unwrap();
    let cfg = offloadd::config::openwrt::load_uci(&dir);
    std::fs::remove_dir_all(&dir).unwrap();
    let cfg = cfg.unwrap();
    assert_eq!(cfg.offload.devices, ["br-lan", "wan"]);
    assert_eq!(cfg.mode, offloadd::config::Mode::Auto);
}

#[test]
fn systemd_unit_verifies() {
    if tool("systemd-analyze").is_none() {
        return;
    }
    // systemd is not PID 1 on the build machines, so the unit is checked offline: verify
    // (syntax, and that ExecStart exists: point it at the binary cargo built) and the
    // sandboxing score (`systemd-analyze security`, 0 = locked down, 10 = exposed).: point it at the binary cargo built.
    let unit = std::fs::read_to_string(repo().join("config/offloadd.service")).unwrap();
    let unit = unit.replace("/usr/local/sbin/offloadd", env!("CARGO_BIN_EXE_offloadd"));
    let dir = std::env::temp_dir().join(format!("offloadd-unit-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("offloadd.service");
    std::fs::write(&path, unit).unwrap();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .unwrap();
    let security = Command::new("systemd-analyze")
        .args(["security", "--offline=yes", "--threshold=40"])
        .arg(&path)
        .output()
        .unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && said.trim().is_empty(),
        "systemd-analyze verify: {said}"
    );
    assert!(
        security.status.success(),
        "exposure above 4.0: {}",
        String::from_utf8_lossy(&security.stdout)
    );
}

/// The OpenWrt Makefile's version fields are valid for opkg and for apk (25.12), its
/// licence file exists, and `packaging/openwrt-sdk.sh` puts a tarball into an SDK's dl/
/// whose sha256 is the PKG_HASH it wrote, with the sources under offloadd-VERSION/.
#[test]
fn openwrt_package_builds_from_a_tarball_with_its_hash() {
    let make = std::fs::read_to_string(repo().join("openwrt-package/Makefile")).unwrap();
    let field = |k: &str| {
        make.lines()
            .find_map(|l| l.strip_prefix(&format!("{k}:=")))
            .unwrap_or_else(|| panic!("no {k} in the Makefile"))
            .to_string()
    };
    let version = field("PKG_VERSION");
    // apk: digits and dots, then an optional _alpha/_beta/_pre/_rc suffix.
    let (num, suffix) = version.split_once('_').unwrap_or((&version, ""));
    assert!(
        num.split('.')
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit())),
        "PKG_VERSION {version} is not valid for apk"
    );
    assert!(
        suffix.is_empty()
            || ["alpha", "beta", "pre", "rc"]
                .iter()
                .any(|s| suffix.starts_with(s))
    );
    assert!(field("PKG_RELEASE").bytes().all(|b| b.is_ascii_digit()));
    assert!(repo().join(field("PKG_LICENSE_FILES")).is_file());
    assert!(!make.contains("example.invalid"));
    if tool("git").is_none() || !repo().join(".git").exists() {
        return;
    }
    let sdk = std::env::temp_dir().join(format!("offloadd-sdk-{}", std::process::id()));
    std::fs::create_dir_all(&sdk).unwrap();
    let out = Command::new(repo().join("packaging/openwrt-sdk.sh"))
        .arg(&sdk)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let tarball = sdk.join(format!("dl/offloadd-{version}.tar.gz"));
    let sum = Command::new("sha256sum").arg(&tarball).output().unwrap();
    let sum = String::from_utf8_lossy(&sum.stdout);
    let sum = sum.split_whitespace().next().unwrap();
    let copied = std::fs::read_to_string(sdk.join("package/offloadd/Makefile")).unwrap();
    assert!(
        copied.contains(&format!("PKG_HASH:={sum}\n")),
        "hash not written"
    );
    let list = Command::new("tar")
        .arg("tzf")
        .arg(&tarball)
        .output()
        .unwrap();
    let list = String::from_utf8_lossy(&list.stdout);
    for f in ["Cargo.toml", "Cargo.lock", "LICENSE", "src/main.rs"] {
        assert!(
            list.lines().any(|l| l == format!("offloadd-{version}/{f}")),
            "{f} not in the tarball"
        );
    }
    std::fs::remove_dir_all(sdk).unwrap();
}
