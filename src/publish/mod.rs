//! Metrics the daemon publishes itself (`[metrics]`), the text `offloadd metrics` prints:
//! - a textfile for node_exporter's textfile collector (and OpenWrt's
//!   prometheus-node-exporter-lua), replaced by rename every interval, so a reader sees
//!   the old file or the new one, never half of one (`textfile`);
//! - `GET /metrics` over HTTP, one request a connection, answered and closed (`http`).
//!
//! A metrics problem (a directory that does not exist, a port in use, a trap at the
//! file's name) is logged, shown in `status`, and leaves offload alone: the flowtable
//! matters more than its report. No file is touched on the runtime thread.

mod http;
mod textfile;

pub use http::{bind_hint, response, route, Route, CONTENT_TYPE, MAX_CLIENTS};
pub use textfile::{check_target, write_atomically, TextfileError};

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tracing::{debug, error, info, warn};

use crate::config::MetricsConfig;
use crate::control::{status, Shared};
use crate::report::metrics;

/// The last textfile write at shutdown gives up after this: a stuck file system must
/// not keep the daemon from exiting.
const LAST_WRITE: Duration = Duration::from_secs(1);

/// The running publishers of one `[metrics]` config.
#[derive(Default)]
pub struct Publisher {
    cfg: MetricsConfig,
    /// The textfile writer, restarted when the path or the interval changes.
    textfile: Option<JoinHandle<()>>,
    /// The HTTP server and the address it is bound to; kept across reloads that leave
    /// `listen` alone, so a scraper never finds the port closed.
    http: Option<(SocketAddr, JoinHandle<()>)>,
}

impl Publisher {
    /// Starts what `cfg` asks for.
    pub async fn start(cfg: &MetricsConfig, shared: &Shared) -> Publisher {
        let mut p = Publisher::default();
        p.reload(cfg, shared).await;
        p
    }

    /// Applies a (re)loaded `[metrics]`: each publisher restarts only if its settings
    /// changed, and an old listener is closed before a new address is bound.
    pub async fn reload(&mut self, cfg: &MetricsConfig, shared: &Shared) {
        let textfile_changed =
            (&cfg.textfile, cfg.interval) != (&self.cfg.textfile, self.cfg.interval);
        if textfile_changed || self.textfile.is_none() {
            if let Some(t) = self.textfile.take() {
                t.abort();
                let _ = t.await;
            }
            if let Some(path) = &cfg.textfile {
                info!(path = %path.display(), interval_ms = cfg.interval.as_millis() as u64, "writing metrics to a textfile");
                self.textfile = Some(tokio::spawn(textfile_loop(
                    path.clone(),
                    cfg.interval,
                    shared.clone(),
                )));
            } else {
                set_error(shared, "textfile", None);
            }
        }
        if self.http.as_ref().map(|h| h.0) != cfg.listen {
            if let Some((addr, task)) = self.http.take() {
                task.abort();
                // The listener lives in the task: awaiting its end closes the port, so
                // binding the same port on another address (or back) does not collide.
                let _ = task.await;
                debug!(listen = %addr, "metrics listener closed");
            }
            set_error(shared, "listen", None);
            if let Some(addr) = cfg.listen {
                self.http = bind(addr, shared).await;
            }
        }
        self.cfg = cfg.clone();
    }

    /// Stops publishing; the textfile is left saying `offloadd_up 0`, so an alert on
    /// it fires at once instead of when the file's age gives it away. Bounded: called
    /// after the table is gone, on the way out.
    pub async fn stop(&mut self) {
        if let Some(t) = self.textfile.take() {
            t.abort();
        }
        if let Some((_, t)) = self.http.take() {
            t.abort();
        }
        if let Some(p) = self.cfg.textfile.take() {
            let write = tokio::task::spawn_blocking(move || {
                write_atomically(&p, metrics(None).as_bytes()).map_err(|e| e.to_string())
            });
            match tokio::time::timeout(LAST_WRITE, write).await {
                Ok(Ok(Ok(()))) => {}
                Ok(Ok(Err(e))) => debug!("last metrics textfile: {e}"),
                Ok(Err(e)) => debug!("last metrics textfile: {e}"),
                Err(_) => {
                    warn!("the last metrics textfile write took over {LAST_WRITE:?}; left behind")
                }
            }
        }
    }
}

async fn bind(addr: SocketAddr, shared: &Shared) -> Option<(SocketAddr, JoinHandle<()>)> {
    match TcpListener::bind(addr).await {
        Ok(l) => {
            info!(listen = %addr, "serving metrics on http://{addr}/metrics");
            if !addr.ip().is_loopback() {
                warn!(listen = %addr, "metrics are served beyond this machine: anyone who reaches {addr} reads flow counts and device names; firewall the port or listen on 127.0.0.1");
            }
            Some((addr, tokio::spawn(http::serve(l, shared.clone()))))
        }
        Err(e) => {
            let text = format!(
                "cannot serve metrics on {addr}: {e}; {}; offload is not affected",
                bind_hint(&e)
            );
            error!(listen = %addr, "{text}");
            set_error(shared, "listen", Some(text));
            None
        }
    }
}

/// Shows (or clears) a metrics problem in `status`, one per output.
fn set_error(shared: &Shared, what: &str, text: Option<String>) {
    let mut st = shared.status.lock().unwrap();
    st.metrics_errors
        .retain(|e| !e.starts_with(&format!("{what}: ")));
    if let Some(t) = text {
        st.metrics_errors.push(format!("{what}: {t}"));
    }
}

async fn textfile_loop(path: PathBuf, every: Duration, shared: Shared) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failing: Option<String> = None;
    loop {
        tick.tick().await;
        let text = metrics(Some(&status(&shared).await));
        let p = path.clone();
        let result = tokio::task::spawn_blocking(move || {
            write_atomically(&p, text.as_bytes()).map_err(|e| e.to_string())
        })
        .await
        .unwrap_or_else(|e| Err(e.to_string()));
        match result {
            Ok(()) if failing.take().is_some() => {
                info!(path = %path.display(), "metrics textfile written again");
                set_error(&shared, "textfile", None);
            }
            Ok(()) => {}
            // Once per distinct error, not every interval.
            Err(e) if failing.as_deref() != Some(&e) => {
                warn!(path = %path.display(), "cannot write the metrics textfile: {e}");
                set_error(&shared, "textfile", Some(e.clone()));
                failing = Some(e);
            }
            Err(_) => {}
        }
    }
}
