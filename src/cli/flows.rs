//! `offloadd flows`: from the daemon when it runs, else straight from the kernel.

use std::path::Path;
use std::time::Duration;

use crate::conntrack::{self, CtSocket, FlowRecord, PathFilter, WatcherOptions};
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

/// Streams the flows `filter` wants to `f` (until it returns false): from the daemon, or
/// without it from one dump of the kernel, after calling `not_running` (the daemon's
/// absence is known at connect, before any flow).
pub fn each(
    socket: &Path,
    filter: Option<PathFilter>,
    not_running: impl FnOnce(),
    mut f: impl FnMut(&FlowRecord) -> bool,
) -> anyhow::Result<()> {
    match control::stream_flows(socket, filter, |r| f(&r)) {
        Ok(_) => Ok(()),
        Err(ClientError::NotRunning(_)) => {
            not_running();
            dump(filter, f)
        }
        Err(e) => Err(e.into()),
    }
}

/// `each` for `--json`: each flow as one line of JSON. The daemon's lines are passed on
/// as they came, not parsed and written again.
pub fn each_json(
    socket: &Path,
    filter: Option<PathFilter>,
    not_running: impl FnOnce(),
    mut f: impl FnMut(&str) -> bool,
) -> anyhow::Result<()> {
    match control::stream_flow_lines(socket, filter, &mut f) {
        Ok(_) => Ok(()),
        Err(ClientError::NotRunning(_)) => {
            not_running();
            dump(filter, |r| {
                serde_json::to_string(r).is_ok_and(|line| f(&line))
            })
        }
        Err(e) => Err(e.into()),
    }
}

/// One dump, filtered in the kernel when the filter allows, classified here, in the
/// kernel's order.
pub fn dump(
    filter: Option<PathFilter>,
    mut f: impl FnMut(&FlowRecord) -> bool,
) -> anyhow::Result<()> {
    let mut sock = CtSocket::for_dumps()?;
    let mut more = true;
    sock.dump(PathFilter::dump_filter(filter), |ev| {
        let r = FlowRecord::from_entry(&ev.entry);
        if more && filter.is_none_or(|p| p.matches(r.path)) {
            more = f(&r);
        }
    })?;
    Ok(())
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
