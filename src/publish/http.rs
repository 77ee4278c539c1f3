//! `GET /metrics` over HTTP/1.x: one request a connection, answered and closed.
//!
//! A scraper sends its head at once; a client that does not within `HEAD_TIMEOUT` is
//! dropped, and when every slot is taken a new connection is told 503 at once instead
//! of waiting behind idle ones.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tracing::{debug, warn};

use crate::control::{status, Shared};
use crate::report::metrics;

/// A request head larger than this is not a scraper's.
const MAX_HEAD: usize = 8192;
/// Scrapes answered at once; one more connection is answered 503 and closed.
pub const MAX_CLIENTS: usize = 8;
/// A client must have sent its whole request head by then.
const HEAD_TIMEOUT: Duration = Duration::from_secs(2);
/// ... and have read the answer by then.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

pub async fn serve(listener: TcpListener, shared: Shared) {
    let clients = Arc::new(tokio::sync::Semaphore::new(MAX_CLIENTS));
    loop {
        let (mut stream, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                warn!("metrics listener: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(permit) = clients.clone().try_acquire_owned() else {
            // Told at once, with its own short deadline, so idle connections holding
            // every slot cannot make the scraper wait for its timeout.
            tokio::spawn(async move {
                let busy = response(503, "text/plain", b"busy; try again\n", false);
                let _ = tokio::time::timeout(HEAD_TIMEOUT, stream.write_all(&busy)).await;
                debug!(%peer, "metrics client refused: {MAX_CLIENTS} busy");
            });
            continue;
        };
        let shared = shared.clone();
        tokio::spawn(async move {
            let _permit = permit;
            if let Err(e) = answer(stream, &shared).await {
                debug!(%peer, "metrics client: {e}");
            }
        });
    }
}

async fn answer(mut stream: TcpStream, shared: &Shared) -> io::Result<()> {
    let head = tokio::time::timeout(HEAD_TIMEOUT, read_head(&mut stream))
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "no request head in time"))??;
    let reply = match route(&head) {
        Route::Metrics { head_only } => {
            let body = metrics(Some(&status(shared).await));
            response(200, CONTENT_TYPE, body.as_bytes(), head_only)
        }
        Route::NotFound => response(404, "text/plain", b"offloadd serves /metrics\n", false),
        Route::BadMethod => response(405, "text/plain", b"GET or HEAD /metrics\n", false),
        Route::Bad => response(400, "text/plain", b"bad request\n", false),
    };
    tokio::time::timeout(WRITE_TIMEOUT, async {
        stream.write_all(&reply).await?;
        stream.shutdown().await
    })
    .await
    .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "the client stopped reading"))?
}

async fn read_head(stream: &mut TcpStream) -> io::Result<Vec<u8>> {
    let mut head = Vec::with_capacity(512);
    let mut buf = [0u8; 1024];
    while head_end(&head).is_none() && head.len() < MAX_HEAD {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
    }
    Ok(head)
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
        503 => "Service Unavailable",
        _ => "Bad Request",
    };
    let extra = match code {
        405 => "Allow: GET, HEAD\r\n",
        503 => "Retry-After: 1\r\n",
        _ => "",
    };
    let mut out = format!(
        "HTTP/1.1 {code} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n{extra}Connection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    if !head_only {
        out.extend_from_slice(body);
    }
    out
}

/// What to do when the listener cannot be bound, naming the sandbox where one refused.
pub fn bind_hint(e: &io::Error) -> &'static str {
    match e.raw_os_error() {
        Some(libc::EAFNOSUPPORT) => "the address family is refused by a sandbox: under systemd the unit's RestrictAddressFamilies= must list AF_INET and AF_INET6 (the shipped unit does; check drop-ins with systemctl cat offloadd)",
        Some(libc::EADDRINUSE) => "another program has the port: choose another [metrics] listen and reload",
        Some(libc::EACCES) => "a port below 1024 needs CAP_NET_BIND_SERVICE: choose a port above 1023 (9811 is offloadd's)",
        Some(libc::EADDRNOTAVAIL) => "no interface has that address: listen on 127.0.0.1 or an address this machine has",
        _ => "check [metrics] listen and reload",
    }
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
}
