//! `offloadd check`: a doctor. `gather` reads the facts (config, kernel, sysctls) without
//! changing anything; `findings` turns them into ok / warn / fail lines with the next
//! step, and is pure so every finding has a unit test.

use serde::Serialize;

use crate::config::{Config, Hardware, Mode};
use crate::link::Mlx5Port;
use crate::nft::Features;
use crate::plan::Desired;

mod gather;
mod kernel;

#[cfg(test)]
use crate::{link::LinkSnapshot, plan::plan};
pub use gather::gather;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Ok,
    Warn,
    Fail,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub level: Level,
    pub what: String,
    /// The next step, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
}

fn f(level: Level, what: impl Into<String>, next: Option<&str>) -> Finding {
    Finding {
        level,
        what: what.into(),
        next: next.map(str::to_string),
    }
}

/// Everything `check` looks at. `None` where a fact could not be read.
#[derive(Debug, Default)]
pub struct Facts {
    pub source: String,
    pub config: Option<Result<Config, String>>,
    pub plan: Option<Result<Desired, String>>,
    /// The trial of the planned ruleset (a batch the kernel checks and never commits).
    pub trial: Option<Result<(), String>>,
    pub no_flowtables: bool,
    /// Our table is already in the kernel (a daemon applied it): proof of support, and
    /// its owner flag would refuse a trial from here.
    pub live: bool,
    /// The kernel refused to let us talk to nf_tables (not root): check cannot run.
    pub denied: Option<String>,
    /// Hardware trial per device: Err(reason) when refused.
    pub hardware: Vec<(String, Result<(), String>)>,
    pub modules: Vec<(&'static str, bool)>,
    /// Other tables' flowtables that cover configured devices ("flowtable ft in table inet
    /// fw4 covers lan0"): a duplicate in manage mode, what is observed otherwise.
    pub duplicates: Vec<String>,
    /// Every other forward base chain (ip, ip6, inet), and our chain's priority: the live
    /// one when a daemon runs, else what it would choose.
    pub forward_chains: Vec<crate::plan::ForwardChain>,
    pub priority: Option<(i32, bool)>,
    /// No priority after every other forward chain exists (one sits at i32::MAX).
    pub priority_error: Option<String>,
    /// Flowtable devices with SQM/QoS shaping, and by what.
    pub shaped: std::collections::BTreeMap<String, String>,
    pub ip_forward: Option<bool>,
    pub conntrack_acct: Option<bool>,
    /// Whether the kernel filters conntrack dumps by status, found by trying one.
    pub status_filter: Option<StatusFilter>,
    /// The nf_tables features, found by trial batches.
    pub features: Option<Result<Features, String>>,
    /// Flowtable devices on the mlx5 driver, with their hw-tc-offload feature.
    pub mlx5: Vec<(Mlx5Port, Option<bool>)>,
    /// The devices this machine has, when none of the configured ones exists.
    pub present: Vec<String>,
    /// `[metrics] textfile`: what the daemon would find at its name and directory.
    pub textfile: Option<Result<(), String>>,
}

/// What an offloaded-only conntrack dump showed.
#[derive(Debug, Clone, PartialEq)]
pub enum StatusFilter {
    /// It returned only offloaded entries of a table that has others.
    Works,
    /// It returned entries without IPS_OFFLOAD: the kernel ignored the filter (Linux <
    /// 5.15) and walked the whole table, `entries` in `took_ms`.
    Ignored { entries: u64, took_ms: f64 },
    /// The table is empty: nothing tells.
    Unknown,
}

pub const MODULES: [&str; 6] = [
    "nf_tables",
    "nf_conntrack",
    "nf_conntrack_netlink",
    "nf_flow_table",
    "nf_flow_table_inet",
    "nft_flow_offload",
];

pub fn findings(x: &Facts) -> Vec<Finding> {
    let mut out = Vec::new();
    let cfg = match &x.config {
        Some(Ok(c)) => {
            out.push(f(Level::Ok, format!("config {} reads", x.source), None));
            Some(c)
        }
        Some(Err(e)) => {
            out.push(f(
                Level::Fail,
                format!("config: {e}"),
                Some("fix that line; `offloadd plan` shows the result"),
            ));
            None
        }
        None => None,
    };
    if let Some(Err(e)) = &x.textfile {
        out.push(f(
            Level::Warn,
            format!("metrics textfile: {e}"),
            Some("offload is not affected; the daemon logs the same and shows it in status"),
        ));
    }
    match &x.plan {
        Some(Ok(d)) => {
            let devs: Vec<&str> = d.devices().collect();
            out.push(f(
                Level::Ok,
                format!(
                    "plan: flowtable devices {}",
                    if devs.is_empty() {
                        "(none present)".into()
                    } else {
                        devs.join(", ")
                    }
                ),
                None,
            ));
            for m in &d.missing {
                out.push(f(Level::Warn, format!("device {m} does not exist now"), Some("a typo? `ip link` lists the devices; one that comes up later (PPPoE, Wi-Fi) is added when it appears")));
            }
        }
        Some(Err(e)) => out.push(f(
            Level::Fail,
            format!("plan: {e}"),
            Some("fix the exclusion named there"),
        )),
        None => {}
    }
    // Built-in modules need not show in /sys/module: only name them when the trial failed.
    let trial_failed = matches!(x.trial, Some(Err(_)));
    for (m, loaded) in x.modules.iter().filter(|_| trial_failed) {
        if !loaded {
            out.push(f(Level::Warn, format!("kernel module {m} is not loaded"), Some("it loads on demand if installed; if the flowtable trial fails: modprobe it (OpenWrt: opkg install kmod-nft-offload)")));
        }
    }
    if let Some(why) = &x.denied {
        out.push(f(
            Level::Fail,
            format!("cannot talk to nf_tables: {why}"),
            Some("run check as root (or with CAP_NET_ADMIN)"),
        ));
    }
    match &x.trial {
        Some(Ok(())) if x.live => out.push(f(Level::Ok, "flowtable support: table inet offloadd is in the kernel (the running daemon applied it)", None)),
        Some(Ok(())) => out.push(f(Level::Ok, "flowtable support: the kernel accepts the planned ruleset (checked without committing)", None)),
        Some(Err(e)) if x.no_flowtables => out.push(f(Level::Fail, format!("flowtable support: {e}"), Some("install the modules named there, or run a kernel that has them; nothing was changed"))),
        Some(Err(e)) => out.push(f(Level::Fail, format!("the kernel refuses the planned ruleset: {e}"), None)),
        None => {}
    }
    kernel::features(x, &mut out);
    let hardware = cfg.is_some_and(|c| c.offload.hardware != Hardware::Off);
    kernel::devices(x, hardware, &mut out);
    let require = cfg.is_some_and(|c| c.offload.hardware == Hardware::Require);
    for (dev, r) in &x.hardware {
        match r {
            Result::Ok(()) => out.push(f(Level::Ok, format!("hardware offload: {dev} accepts it"), None)),
            Err(e) if require => out.push(f(Level::Fail, format!("hardware offload: {dev} refuses: {e}"), Some("hardware = \"require\" will not start; use \"auto\" to let it use software offload"))),
            Err(e) => out.push(f(Level::Warn, format!("hardware offload: {dev} refuses: {e}"), Some("it uses software offload (hardware = \"auto\")"))),
        }
    }
    if let Some((ours, live)) = x.priority {
        let when = if live { "runs" } else { "would run" };
        let mut late: Vec<String> = Vec::new();
        for c in &x.forward_chains {
            if c.priority >= ours {
                late.push(c.to_string());
            }
        }
        let list: Vec<String> = x.forward_chains.iter().map(|c| c.to_string()).collect();
        let ours_text = crate::plan::priority_text(ours);
        if late.is_empty() {
            let what = if list.is_empty() {
                format!("forward chain at {ours_text}: there is no other forward chain")
            } else {
                format!(
                    "forward chain at {ours_text} {when} after {}",
                    list.join(", ")
                )
            };
            out.push(f(Level::Ok, what, None));
        } else {
            out.push(f(
                Level::Fail,
                format!("forward chain at {ours_text} {when} before {}: a flow could be offloaded before that chain judged it", late.join(", ")),
                Some("leave [offload] priority out (offloadd then places its chain after every other), or set it above these"),
            ));
        }
    }
    if let Some(e) = &x.priority_error {
        out.push(f(
            Level::Fail,
            format!("forward chain priority: {e}"),
            Some("until then the daemon applies nothing (status shows the same error)"),
        ));
    }
    for d in &x.duplicates {
        let auto = cfg.is_some_and(|c| c.mode != Mode::Manage);
        if auto {
            out.push(f(
                Level::Ok,
                format!(
                    "another flowtable covers our devices ({d}); mode auto/observe reports on it"
                ),
                None,
            ));
        } else {
            out.push(f(Level::Warn, format!("duplicate: {d}: two flowtables on one device"), Some("turn one off: uncheck software flow offloading in the firewall, or use mode \"auto\"")));
        }
    }
    let hw = cfg.is_some_and(|c| c.offload.hardware != Hardware::Off);
    for (dev, what) in &x.shaped {
        let what = if hw {
            format!("{dev} is shaped ({what}): hardware offload would bypass the shaper, so offloadd keeps {dev} on software offload")
        } else {
            format!("{dev} is shaped ({what}): software offload keeps the shaping")
        };
        out.push(f(
            Level::Warn,
            what,
            Some("for hardware offload on this device remove the shaper; otherwise nothing to do"),
        ));
    }
    match x.ip_forward {
        Some(false) => out.push(f(
            Level::Warn,
            "net.ipv4.ip_forward is 0: this machine forwards nothing, so nothing can be offloaded",
            Some("sysctl -w net.ipv4.ip_forward=1 if it is meant to route"),
        )),
        Some(true) => out.push(f(Level::Ok, "net.ipv4.ip_forward is 1", None)),
        None => {}
    }
    match &x.status_filter {
        Some(StatusFilter::Works) => out.push(f(Level::Ok, "conntrack: the kernel filters dumps by status, so resyncs read only offloaded flows", None)),
        Some(StatusFilter::Ignored { entries, took_ms }) => out.push(f(
            Level::Warn,
            format!("conntrack: the kernel ignores the status filter of dumps (Linux < 5.15, e.g. RHEL 9): each resync reads the whole table ({entries} entries took {took_ms:.0} ms now)"),
            Some("offloadd spaces its resyncs so they take at most 2 % of the time; a kernel of 5.15 or later reads only offloaded flows"),
        )),
        Some(StatusFilter::Unknown) | None => {}
    }
    if x.conntrack_acct == Some(false) {
        out.push(f(
            Level::Warn,
            "net.netfilter.nf_conntrack_acct is 0: slow flows show no byte or packet counts, and offloadd top no rate for them",
            Some("set [conntrack] accounting = true (UCI: option accounting 1) to turn it on while offloadd runs, or sysctl -w net.netfilter.nf_conntrack_acct=1; it counts flows created after"),
        ));
    }
    out.push(f(
        Level::Ok,
        "note: only forwarded TCP/UDP is offloaded; a speed test run on the router itself never is",
        Some("test from a LAN client through the router; watch with `offloadd flows --watch`"),
    ));
    out
}

/// 0: nothing failed; 1: something failed; 2: check could not run.
pub fn exit_code(x: &Facts, found: &[Finding]) -> u8 {
    if x.denied.is_some() {
        2
    } else if found.iter().any(|f| f.level == Level::Fail) {
        1
    } else {
        0
    }
}

pub fn text(found: &[Finding]) -> String {
    let mut o = String::new();
    for x in found {
        let tag = match x.level {
            Level::Ok => "ok  ",
            Level::Warn => "WARN",
            Level::Fail => "FAIL",
        };
        o.push_str(&format!("{tag} {}\n", x.what));
        if let (Some(n), true) = (&x.next, x.level != Level::Ok || x.what.starts_with("note")) {
            o.push_str(&format!("     -> {n}\n"));
        }
    }
    o
}

#[cfg(test)]
mod tests;
