//! `offloadd flows`: from the daemon when it runs, else straight from the kernel.

use std::path::Path;
use std::time::Duration;

use crate::conntrack::{self, sort_flows, CtSocket, FlowRecord, PathFilter, WatcherOptions};
use crate::control::{self, ClientError, WatchLine};

/// Where a listing came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Daemon,
    /// The daemon is not running: one dump, without history (no time on path).
    Kernel,
}

pub const NOT_RUNNING_NOTE: &str =
    "offloadd is not running; reading conntrack directly (time on path and time to offload are unknown)";

pub fn list(
    socket: &Path,
    filter: Option<PathFilter>,
) -> anyhow::Result<(Vec<FlowRecord>, Source)> {
    match control::get_flows(socket, filter) {
        Ok(flows) => Ok((flows, Source::Daemon)),
        Err(ClientError::NotRunning(_)) => Ok((dump(filter)?, Source::Kernel)),
        Err(e) => Err(e.into()),
    }
}

/// One dump, filtered in the kernel when the filter allows, classified here.
pub fn dump(filter: Option<PathFilter>) -> anyhow::Result<Vec<FlowRecord>> {
    let mut sock = CtSocket::for_dumps()?;
    let mut out = Vec::new();
    sock.dump(PathFilter::dump_filter(filter), |ev| {
        let f = FlowRecord::from_entry(&ev.entry);
        if filter.is_none_or(|p| p.matches(f.path)) {
            out.push(f);
        }
    })?;
    sort_flows(&mut out);
    Ok(out)
}

/// Streams transitions to `f` until it returns false. Without a daemon, runs a watcher
/// of its own (events plus resyncs every `resync`), so the answer is the same.
pub fn watch(
    socket: &Path,
    resync: Duration,
    mut f: impl FnMut(WatchLine) -> bool,
) -> anyhow::Result<Source> {
    match control::watch_transitions(socket, &mut f) {
        Ok(()) => return Ok(Source::Daemon),
        Err(ClientError::NotRunning(_)) => {}
        Err(e) => return Err(e.into()),
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let w = conntrack::spawn_watcher(WatcherOptions {
            resync_interval: resync,
            event_buffer: crate::config::DEFAULT_EVENT_BUFFER,
        })?;
        let mut rx = w.subscribe();
        loop {
            let Some(line) = WatchLine::next(&mut rx).await else {
                return Ok(Source::Kernel);
            };
            if !f(line) {
                return Ok(Source::Kernel);
            }
        }
    })
}
