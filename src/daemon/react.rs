//! How the daemon reacts to events besides applies: flushes after firewall changes, and
//! logging device news once.

use std::sync::Mutex;
use std::time::Instant;

use tracing::{error, info, warn};

use crate::nft::monitor::RulesetChange;
use crate::nft::NftHandle;
use crate::status::{DeviceState, Status};

pub async fn recv_change(
    rx: &mut Option<tokio::sync::mpsc::Receiver<RulesetChange>>,
) -> Option<RulesetChange> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// Recreates our table so that offloaded flows meet the changed firewall on their next
/// packet, and records it in status.
pub async fn flush(nft: &NftHandle, tables: Vec<String>, status: &Mutex<Status>) {
    let started = Instant::now();
    match nft.flush().await {
        Ok(true) => {
            let took = started.elapsed();
            info!(tables = ?tables, took_ms = took.as_millis() as u64, "firewall changed; flushed the flowtable (offloaded flows go through the new rules on their next packet)");
            let mut st = status.lock().unwrap();
            st.flushes += 1;
            st.last_flush = Some(crate::status::Flush {
                at_unix_ms: crate::conntrack::unix_ms(),
                tables,
                took_ms: took.as_secs_f64() * 1000.0,
            });
        }
        Ok(false) => {}
        Err(e) => error!("firewall changed but flushing the flowtable failed: {e}"),
    }
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
