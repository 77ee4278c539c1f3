//! The OpenWrt package and the systemd unit: the procd init script against a stand-in
//! for rc.common/procd, its capability set, the rpcd plugin, the default UCI file, and
//! the unit file.

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
procd_add_jail() { calls add_jail "$@"; }
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
        "add_jail offloadd",
        "set_param capabilities /etc/capabilities/offloadd.json",
        "set_param no_new_privs 1",
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

/// The capabilities procd's ujail leaves offloadd on OpenWrt: the same two as the systemd
/// unit's CapabilityBoundingSet, in every set of the JSON (ujail reads bounding, effective,
/// inheritable, permitted and ambient; a name it does not know fails the start), and the
/// file is installed where the init script points procd.
#[test]
fn procd_capabilities_match_the_unit_and_are_installed() {
    let want = ["CAP_NET_ADMIN", "CAP_NET_BIND_SERVICE"];
    let json = std::fs::read_to_string(files().join("offloadd.capabilities.json")).unwrap();
    let caps: serde_json::Value = serde_json::from_str(&json).unwrap();
    let sets = caps.as_object().expect("a JSON object");
    let mut names: Vec<&String> = sets.keys().collect();
    names.sort();
    assert_eq!(
        names,
        [
            "ambient",
            "bounding",
            "effective",
            "inheritable",
            "permitted"
        ]
    );
    for (set, list) in sets {
        let list: Vec<&str> = list
            .as_array()
            .unwrap_or_else(|| panic!("{set} is not a list"))
            .iter()
            .map(|c| c.as_str().unwrap())
            .collect();
        assert_eq!(list, want, "{set}");
    }
    // ujail looks each name up in the kernel's list (capabilities-names.h).
    if let Ok(header) = std::fs::read_to_string("/usr/include/linux/capability.h") {
        for c in want {
            assert!(
                header.contains(&format!("#define {c} ")),
                "{c} is not a capability"
            );
        }
    }
    let unit = std::fs::read_to_string(repo().join("config/offloadd.service")).unwrap();
    let bounding = unit
        .lines()
        .find_map(|l| l.strip_prefix("CapabilityBoundingSet="))
        .expect("the unit has a CapabilityBoundingSet");
    assert_eq!(bounding.split_whitespace().collect::<Vec<_>>(), want);
    let init = std::fs::read_to_string(files().join("offloadd.init")).unwrap();
    assert!(init.contains("procd_set_param capabilities /etc/capabilities/offloadd.json\n"));
    let make = std::fs::read_to_string(repo().join("openwrt-package/Makefile")).unwrap();
    assert!(
        make.contains(
            "$(INSTALL_DATA) ./files/offloadd.capabilities.json $(1)/etc/capabilities/offloadd.json\n"
        ),
        "the Makefile does not install the capabilities where the init script points"
    );
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
    // sandboxing score (`systemd-analyze security`, 0 = locked down, 10 = exposed).
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

/// Runs a command and returns its stdout; fails the test with its stderr otherwise.
fn run_ok(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `packaging/build.sh all --lint` (lintian and rpmlint must pass) from the binary cargo
/// built; then each package's file list and metadata, the .deb installed with `dpkg
/// --root` into a throwaway root (maintainer scripts included: they must do nothing to
/// this machine's systemd) and the .rpm with `rpm --root`, `offloadd --version` run from
/// each root, and `systemd-analyze verify` on the installed unit, which must also fail
/// once its ExecStart names a binary the root does not have.
#[test]
fn deb_and_rpm_packages_lint_install_into_a_throwaway_root_and_verify() {
    for t in [
        "dpkg-deb",
        "dpkg-shlibdeps",
        "rpmbuild",
        "lintian",
        "rpmlint",
        "systemd-analyze",
    ] {
        if tool(t).is_none() {
            return;
        }
    }
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        assert!(
            !in_ci(),
            "dpkg --root needs root; CI runs the tests as root"
        );
        eprintln!("skipped: dpkg --root needs root");
        return;
    }
    let version = env!("CARGO_PKG_VERSION");
    let tmp = std::env::temp_dir().join(format!("offloadd-pkgtest-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    let out = tmp.join("packages");
    let said = run_ok(
        Command::new(repo().join("packaging/build.sh"))
            .args([
                "all",
                "--lint",
                "--binary",
                env!("CARGO_BIN_EXE_offloadd"),
                "--out",
            ])
            .arg(&out),
    );
    let deb_arch = run_ok(Command::new("dpkg").arg("--print-architecture"));
    let rpm_arch = run_ok(Command::new("uname").arg("-m"));
    let deb = out.join(format!("offloadd_{version}-1_{}.deb", deb_arch.trim()));
    let rpm = out.join(format!("offloadd-{version}-1.{}.rpm", rpm_arch.trim()));
    assert!(deb.exists() && rpm.exists(), "{said}");

    let files = run_ok(Command::new("dpkg-deb").arg("-c").arg(&deb));
    for f in [
        "./usr/sbin/offloadd",
        "./lib/systemd/system/offloadd.service",
        "./etc/offloadd/offloadd.toml",
        "./usr/share/doc/offloadd/copyright",
    ] {
        assert!(files.contains(f), "{f} not in the .deb:\n{files}");
    }
    let info = run_ok(Command::new("dpkg-deb").arg("-I").arg(&deb));
    assert!(info.contains(&format!(" Version: {version}-1")), "{info}");
    let depends = info
        .lines()
        .find(|l| l.starts_with(" Depends: "))
        .unwrap_or_default();
    assert!(
        depends.contains("libnftnl11 (>= ") && depends.contains("libmnl0 (>= "),
        "{info}"
    );
    assert!(
        info.contains("/etc/offloadd/offloadd.toml"),
        "not a conffile: {info}"
    );

    let rfiles = run_ok(Command::new("rpm").arg("-qlp").arg(&rpm));
    for f in [
        "/usr/sbin/offloadd",
        "/usr/lib/systemd/system/offloadd.service",
        "/etc/offloadd/offloadd.toml",
        "/usr/share/licenses/offloadd/LICENSE",
    ] {
        assert!(
            rfiles.lines().any(|l| l == f),
            "{f} not in the .rpm:\n{rfiles}"
        );
    }
    let rinfo = run_ok(Command::new("rpm").arg("-qip").arg(&rpm));
    assert!(rinfo.contains("License     : GPL-2.0-only"), "{rinfo}");
    let requires = run_ok(Command::new("rpm").arg("-qRp").arg(&rpm));
    assert!(
        requires.contains("libnftnl.so.11()") && requires.contains("libmnl.so.0()"),
        "{requires}"
    );
    let config = run_ok(Command::new("rpm").args(["-qp", "--configfiles"]).arg(&rpm));
    assert_eq!(config.trim(), "/etc/offloadd/offloadd.toml");

    // The .deb into a root of its own: an empty dpkg database, scripts run outside a
    // chroot with DPKG_ROOT set (the root has no shell), dependencies not in that root.
    let root = tmp.join("root");
    let admin = root.join("var/lib/dpkg");
    std::fs::create_dir_all(admin.join("info")).unwrap();
    std::fs::create_dir_all(admin.join("updates")).unwrap();
    std::fs::write(admin.join("status"), "").unwrap();
    std::fs::write(admin.join("available"), "").unwrap();
    run_ok(
        Command::new("dpkg")
            .arg(format!("--root={}", root.display()))
            .args(["--force-depends", "--force-script-chrootless", "-i"])
            .arg(&deb),
    );
    let v = run_ok(Command::new(root.join("usr/sbin/offloadd")).arg("--version"));
    assert_eq!(v.trim(), format!("offloadd {version}"));
    let toml = std::fs::read_to_string(root.join("etc/offloadd/offloadd.toml")).unwrap();
    assert!(
        toml.contains("\ndevices = []"),
        "the default config must list no devices"
    );
    run_ok(
        Command::new(root.join("usr/sbin/offloadd"))
            .args(["plan", "--config"])
            .arg(root.join("etc/offloadd/offloadd.toml")),
    );
    // systemd-analyze verify --root resolves ExecStart and the units ours depends on
    // inside the root: give it this machine's units and kill(1) (ExecReload).
    let units = root.join("lib/systemd/system");
    run_ok(
        Command::new("cp")
            .args(["-an", "/lib/systemd/system/."])
            .arg(&units),
    );
    std::fs::create_dir_all(root.join("bin")).unwrap();
    std::fs::copy("/bin/kill", root.join("bin/kill")).unwrap();
    let verify = |unit: &std::path::Path| {
        Command::new("systemd-analyze")
            .arg("verify")
            .arg(format!("--root={}", root.display()))
            .arg(unit)
            .output()
            .unwrap()
    };
    let ok = verify(&units.join("offloadd.service"));
    let said = String::from_utf8_lossy(&ok.stderr);
    assert!(
        ok.status.success() && said.trim().is_empty(),
        "systemd-analyze verify: {said}"
    );
    let unit = std::fs::read_to_string(units.join("offloadd.service")).unwrap();
    assert!(
        unit.contains("\nExecStart=/usr/sbin/offloadd run\n"),
        "{unit}"
    );
    std::fs::write(
        units.join("offloadd-broken.service"),
        unit.replace("/usr/sbin/offloadd run", "/usr/sbin/offloadd-missing run"),
    )
    .unwrap();
    let broken = verify(&units.join("offloadd-broken.service"));
    assert!(
        !broken.status.success(),
        "verify passed a unit whose ExecStart is missing"
    );

    // The .rpm into another root, without its scriptlets (that root has no shell).
    let rroot = tmp.join("rroot");
    run_ok(
        Command::new("rpm")
            .arg("--root")
            .arg(&rroot)
            .arg("--initdb"),
    );
    run_ok(
        Command::new("rpm")
            .arg("--root")
            .arg(&rroot)
            .args(["-i", "--nodeps", "--noscripts"])
            .arg(&rpm),
    );
    let v = run_ok(Command::new(rroot.join("usr/sbin/offloadd")).arg("--version"));
    assert_eq!(v.trim(), format!("offloadd {version}"));
    let _ = std::fs::remove_dir_all(&tmp);
}
