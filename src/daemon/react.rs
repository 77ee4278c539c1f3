//! How the daemon reacts to events besides applies: flushes after firewall changes in
//! status, and logging device news once.

use std::sync::Mutex;
use std::time::Duration;

use tracing::{info, warn};

use super::flush::FlushSchedule;
use crate::nft::monitor::RulesetChange;
use crate::status::{DeviceState, Status};

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
    st.last_flush = Some(crate::status::Flush {
        at_unix_ms: crate::conntrack::unix_ms(),
        tables,
        took_ms: took.as_secs_f64() * 1000.0,
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
