//! How the daemon reacts to events besides applies: flushes after firewall changes in
//! status, and logging device news once.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use tracing::{error, info, warn};

use super::apply::{apply_and_record, Why};
use super::flush::FlushSchedule;
use super::{Links, Role};
use crate::config::Config;
use crate::conntrack::WatcherHandle;
use crate::control::Flushed;
use crate::nft::monitor::RulesetChange;
use crate::nft::NftHandle;
use crate::view::status::{DeviceState, Status};

/// What a flush asked for over the socket (`offloadd flush`) needs from the daemon.
pub struct FlushContext<'a> {
    pub nft: &'a NftHandle,
    pub cfg: &'a Config,
    pub exclude_file: &'a std::path::Path,
    pub links: &'a Links,
    pub status: &'a Mutex<Status>,
    pub watcher: Option<&'a WatcherHandle>,
}

/// `offloadd flush`: replaces the flowtable now, so every offloaded flow meets the
/// whole ruleset on its next packet (and is offloaded again after it). A VRRP backup
/// that becomes master runs it: offloaded flows carry no state conntrackd syncs.
pub async fn requested_flush(c: FlushContext<'_>, role: &Role) -> Result<Flushed, String> {
    if let Role::Observe { why } = role {
        return Err(format!("offloadd only observes ({why}): it owns no flowtable to flush; reload the firewall that owns the flowtable (fw4: /etc/init.d/firewall reload)"));
    }
    let offloaded_before = match c.watcher {
        Some(w) => w.stats().await.map(|s| s.sw + s.hw),
        None => None,
    };
    let started = Instant::now();
    let a = apply_and_record(
        c.nft,
        c.cfg,
        c.exclude_file,
        c.links,
        c.status,
        Why::Event,
        true,
    )
    .await
    .map_err(|e| {
        error!("flush asked for over the control socket failed: {e:#}");
        format!("{e:#}; the running ruleset is unchanged")
    })?;
    let took = started.elapsed();
    if a.flushed {
        info!(took_ms = took.as_millis() as u64, offloaded_before = ?offloaded_before, "flushed the flowtable as asked (offloadd flush): offloaded flows go through the whole ruleset on their next packet");
        let mut st = c.status.lock().unwrap();
        st.flushes_requested += 1;
        st.last_flush = Some(crate::view::status::Flush {
            at_unix_ms: crate::conntrack::unix_ms(),
            tables: vec![],
            took_ms: took.as_secs_f64() * 1000.0,
            requested: true,
        });
    }
    Ok(Flushed {
        flushed: a.flushed,
        took_ms: took.as_secs_f64() * 1000.0,
        offloaded_before,
    })
}

pub async fn recv_change(
    rx: &mut Option<tokio::sync::mpsc::Receiver<RulesetChange>>,
) -> Option<RulesetChange> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// Records a flush that happened (`did`: the flowtables were replaced; false when there
/// was no table to flush, so no flow of ours was offloaded).
pub fn flushed(
    status: &Mutex<Status>,
    tables: Vec<String>,
    did: bool,
    took: Duration,
    since: Option<std::time::Instant>,
) {
    let mut st = status.lock().unwrap();
    st.flush_pending = None;
    if !did {
        return;
    }
    // since_change_ms: from the kernel's notification of the (first) change to the end
    // of the flush, the daemon's whole share of the delay.
    let since_ms = since.map_or(0, |t| t.elapsed().as_millis() as u64);
    info!(tables = ?tables, took_ms = took.as_millis() as u64, since_change_ms = since_ms, "firewall changed; flushed the flowtable (offloaded flows go through the new rules on their next packet)");
    st.flushes += 1;
    st.last_flush = Some(crate::view::status::Flush {
        at_unix_ms: crate::conntrack::unix_ms(),
        tables,
        took_ms: took.as_secs_f64() * 1000.0,
        requested: false,
    });
}

/// Shows in status a flush that is due (and why it has not happened, after a failure)
/// and how many commits were not flushed for.
pub fn flush_state(status: &Mutex<Status>, flushes: &FlushSchedule, error: Option<String>) {
    let mut st = status.lock().unwrap();
    st.commits_not_flushed = flushes.ignored;
    st.flush_pending = flushes.due().map(|_| {
        let tables = flushes.tables().join(", ");
        match error {
            Some(e) => format!("after changes to {tables}: the last try failed ({e}); retrying"),
            None => format!("after changes to {tables}"),
        }
    });
}

/// Logs device problems once: at start and reload all of them, after link events only
/// those that are new (a device that comes and goes a thousand times is not a thousand
/// hardware warnings).
pub fn log_news(before: &Status, now: &Status, announce: bool) {
    let state_before = |name: &str| before.devices.iter().find(|d| d.name == name);
    for d in &now.devices {
        let old = state_before(&d.name);
        let new = announce || old.map(|o| (o.state, &o.why)) != Some((d.state, &d.why));
        let was_missing = old.is_some_and(|o| o.state == DeviceState::Missing);
        match d.state {
            DeviceState::Missing if new && !announce => {
                info!(device = %d.name, "configured device is gone; added again when it appears")
            }
            DeviceState::InFlowtable | DeviceState::Hardware if was_missing && !announce => {
                info!(device = %d.name, "configured device appeared; added to the flowtable")
            }
            DeviceState::Refused if new => {
                let why = d.why.as_deref().unwrap_or("");
                warn!(device = %d.name, reason = %why, "the kernel refused this device; left out of the flowtable")
            }
            _ => {}
        }
    }
    for r in &now.hardware.refused {
        if announce || !before.hardware.refused.contains(r) {
            warn!(device = %r.device, reason = %r.reason, "hardware offload refused; device uses software offload");
        }
    }
}
