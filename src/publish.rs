//! Metrics the daemon publishes itself (`[metrics]`), the text `offloadd metrics` prints:
//! - a textfile for node_exporter's textfile collector (and OpenWrt's
//!   prometheus-node-exporter-lua), replaced by rename every interval, so a reader sees
//!   the old file or the new one, never half of one;
//! - `GET /metrics` over HTTP, one request a connection, answered and closed.
//!
//! A metrics problem (a directory that does not exist, a port in use) is logged and
//! leaves offload alone: the flowtable matters more than its report.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tracing::{debug, error, info, warn};

use crate::config::MetricsConfig;
use crate::control::{status, Shared};
use crate::report::metrics;

/// A request head larger than this is not a scraper's.
const MAX_HEAD: usize = 8192;
/// Scrapes answered at once; more connections wait in the listen queue.
const MAX_CLIENTS: usize = 8;
/// A client that has not sent its request and read its answer by then is dropped.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(10);
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The running publishers of one `[metrics]` config.
#[derive(Default)]
pub struct Publisher {
    cfg: MetricsConfig,
    tasks: Vec<JoinHandle<()>>,
}

impl Publisher {
    /// Starts what `cfg` asks for; a reload with other settings calls it again.
    pub async fn start(cfg: &MetricsConfig, shared: &Shared) -> Publisher {
        let mut tasks = Vec::new();
        if let Some(path) = &cfg.textfile {
            info!(path = %path.display(), interval_ms = cfg.interval.as_millis() as u64, "writing metrics to a textfile");
            tasks.push(tokio::spawn(textfile_loop(
                path.clone(),
                cfg.interval,
                shared.clone(),
            )));
        }
        if let Some(addr) = cfg.listen {
            match TcpListener::bind(addr).await {
                Ok(l) => {
                    info!(listen = %addr, "serving metrics on http://{addr}/metrics");
                    if !addr.ip().is_loopback() {
                        warn!(listen = %addr, "metrics are served beyond this machine: anyone who reaches {addr} reads flow counts and device names; firewall the port or listen on 127.0.0.1");
                    }
                    tasks.push(tokio::spawn(serve_http(l, shared.clone())));
                }
                Err(e) => {
                    error!(listen = %addr, "cannot serve metrics on {addr}: {e}; choose another [metrics] listen (another program has the port?) and reload; offload is not affected")
                }
            }
        }
        Publisher {
            cfg: cfg.clone(),
            tasks,
        }
    }

    /// Applies a reloaded `[metrics]`: restarts the publishers only if it changed.
    pub async fn reload(&mut self, cfg: &MetricsConfig, shared: &Shared) {
        if *cfg != self.cfg {
            self.stop();
            *self = Publisher::start(cfg, shared).await;
        }
    }

    /// Stops publishing; the textfile is left saying `offloadd_up 0`, so an alert on
    /// it fires at once instead of when the file's age gives it away.
    pub fn stop(&mut self) {
        for t in self.tasks.drain(..) {
            t.abort();
        }
        if let Some(p) = self.cfg.textfile.take() {
            if let Err(e) = write_atomically(&p, metrics(None).as_bytes()) {
                debug!(path = %p.display(), "last metrics textfile: {e}");
            }
        }
    }
}

/// Writes `bytes` beside `path` and renames it over `path`: rename within a directory
/// is atomic, and the temporary name does not end in .prom, so no collector reads it.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> io::Result<()> {
    use std::io::Write;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.{}.tmp", std::process::id()));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        use std::os::unix::fs::PermissionsExt;
        f.set_permissions(std::fs::Permissions::from_mode(0o644))?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

async fn textfile_loop(path: PathBuf, every: Duration, shared: Shared) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failing: Option<String> = None;
    loop {
        tick.tick().await;
        let text = metrics(Some(&status(&shared).await));
        let p = path.clone();
        let result = tokio::task::spawn_blocking(move || write_atomically(&p, text.as_bytes()))
            .await
            .unwrap_or_else(|e| Err(io::Error::other(e)));
        match result {
            Ok(()) if failing.take().is_some() => {
                info!(path = %path.display(), "metrics textfile written again")
            }
            Ok(()) => {}
            // Once per distinct error, not every interval.
            Err(e) if failing.as_deref() != Some(&e.to_string()) => {
                warn!(path = %path.display(), "cannot write the metrics textfile: {e}; create its directory (node_exporter's --collector.textfile.directory) or change [metrics] textfile");
                failing = Some(e.to_string());
            }
            Err(_) => {}
        }
    }
}

async fn serve_http(listener: TcpListener, shared: Shared) {
    let clients = Arc::new(tokio::sync::Semaphore::new(MAX_CLIENTS));
    loop {
        let Ok(permit) = clients.clone().acquire_owned().await else {
            return;
        };
        match listener.accept().await {
            Ok((stream, peer)) => {
                let shared = shared.clone();
                tokio::spawn(async move {
                    let _permit = permit;
                    match tokio::time::timeout(CLIENT_TIMEOUT, answer(stream, &shared)).await {
                        Ok(Err(e)) => debug!(%peer, "metrics client: {e}"),
                        Err(_) => debug!(%peer, "metrics client too slow; dropped"),
                        Ok(Ok(())) => {}
                    }
                });
            }
            Err(e) => {
                warn!("metrics listener: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

async fn answer(mut stream: TcpStream, shared: &Shared) -> io::Result<()> {
    let mut head = Vec::with_capacity(512);
    let mut buf = [0u8; 1024];
    while head_end(&head).is_none() && head.len() < MAX_HEAD {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            return Ok(());
        }
        head.extend_from_slice(&buf[..n]);
    }
    let reply = match route(&head) {
        Route::Metrics { head_only } => {
            let body = metrics(Some(&status(shared).await));
            response(200, CONTENT_TYPE, body.as_bytes(), head_only)
        }
        Route::NotFound => response(404, "text/plain", b"offloadd serves /metrics\n", false),
        Route::BadMethod => response(405, "text/plain", b"GET or HEAD /metrics\n", false),
        Route::Bad => response(400, "text/plain", b"bad request\n", false),
    };
    stream.write_all(&reply).await?;
    stream.shutdown().await
}

#[derive(Debug, PartialEq, Eq)]
pub enum Route {
    Metrics { head_only: bool },
    NotFound,
    BadMethod,
    Bad,
}

fn head_end(head: &[u8]) -> Option<usize> {
    head.windows(4)
        .position(|w| w == b"\r\n\r\n")
        .or_else(|| head.windows(2).position(|w| w == b"\n\n"))
}

/// What a request head asks for: only its request line matters.
pub fn route(head: &[u8]) -> Route {
    if head_end(head).is_none() {
        return Route::Bad;
    }
    let line = head.split(|&b| b == b'\n').next().unwrap_or_default();
    let Ok(line) = std::str::from_utf8(line) else {
        return Route::Bad;
    };
    let mut words = line.trim_end_matches('\r').split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (words.next(), words.next(), words.next(), words.next())
    else {
        return Route::Bad;
    };
    if !version.starts_with("HTTP/1.") {
        return Route::Bad;
    }
    let path = target.split('?').next().unwrap_or_default();
    match (method, path) {
        ("GET" | "HEAD", "/metrics") => Route::Metrics {
            head_only: method == "HEAD",
        },
        ("GET" | "HEAD", _) => Route::NotFound,
        _ => Route::BadMethod,
    }
}

/// One whole HTTP/1.1 answer; the connection closes after it.
pub fn response(code: u16, content_type: &str, body: &[u8], head_only: bool) -> Vec<u8> {
    let reason = match code {
        200 => "OK",
        404 => "Not Found",
        405 => "Method Not Allowed",
        _ => "Bad Request",
    };
    let allow = if code == 405 {
        "Allow: GET, HEAD\r\n"
    } else {
        ""
    };
    let mut out = format!(
        "HTTP/1.1 {code} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n{allow}Connection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    if !head_only {
        out.extend_from_slice(body);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_metrics_and_nothing_else() {
        let r = |s: &str| route(s.as_bytes());
        assert_eq!(
            r("GET /metrics HTTP/1.1\r\nHost: x\r\nAccept: */*\r\n\r\n"),
            Route::Metrics { head_only: false }
        );
        assert_eq!(
            r("GET /metrics?x=1 HTTP/1.0\n\n"),
            Route::Metrics { head_only: false }
        );
        assert_eq!(
            r("HEAD /metrics HTTP/1.1\r\n\r\n"),
            Route::Metrics { head_only: true }
        );
        assert_eq!(r("GET / HTTP/1.1\r\n\r\n"), Route::NotFound);
        assert_eq!(r("POST /metrics HTTP/1.1\r\n\r\n"), Route::BadMethod);
        assert_eq!(
            r("GET /metrics HTTP/1.1\r\nHost: x\r\n"),
            Route::Bad,
            "head not ended"
        );
        assert_eq!(r("GET /metrics\r\n\r\n"), Route::Bad, "HTTP/0.9");
        assert_eq!(r("GET /metrics SPDY/3\r\n\r\n"), Route::Bad);
        assert_eq!(r("\u{0}\u{1}\r\n\r\n"), Route::Bad);
    }

    #[test]
    fn responses_carry_length_and_close() {
        let ok = String::from_utf8(response(200, CONTENT_TYPE, b"offloadd_up 1\n", false)).unwrap();
        assert_eq!(
            ok,
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\nContent-Length: 14\r\nConnection: close\r\n\r\noffloadd_up 1\n"
        );
        let head =
            String::from_utf8(response(200, CONTENT_TYPE, b"offloadd_up 1\n", true)).unwrap();
        assert!(
            head.ends_with("Content-Length: 14\r\nConnection: close\r\n\r\n"),
            "{head}"
        );
        let bad = String::from_utf8(response(405, "text/plain", b"", false)).unwrap();
        assert!(bad.contains("405 Method Not Allowed\r\n") && bad.contains("Allow: GET, HEAD\r\n"));
    }

    #[test]
    fn textfile_is_replaced_whole_and_leaves_no_temporary() {
        let dir = std::env::temp_dir().join(format!("offloadd-publish-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("offloadd.prom");
        write_atomically(&p, b"offloadd_up 1\n").unwrap();
        write_atomically(&p, b"offloadd_up 0\n").unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "offloadd_up 0\n");
        let names: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["offloadd.prom"]);
        let e = write_atomically(&dir.join("none/offloadd.prom"), b"x").unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
