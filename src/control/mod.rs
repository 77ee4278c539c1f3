//! The control socket (`/run/offloadd.sock`, mode 0600, root only).
//!
//! Protocol: the client connects and writes one JSON object on one line; the daemon
//! answers with one JSON line and closes, except for `flows` and `watch`, which stream
//! one JSON object a line.
//! - `{"request":"status"}` → a `Status` object
//! - `{"request":"flows","path":"offloaded"}` (`path`: slow|sw|hw|offloaded, optional)
//!   → one flow record a line, then `{"end":N}` (N records were sent)
//! - `{"request":"watch"}` → `{"transition":{...}}` lines; `{"lagged":N}` if the client
//!   read too slowly and N transitions were skipped
//! - `{"request":"flush"}` → a `Flushed` object once the flowtable was replaced
//! - `{"request":"history"}` → the last path changes (`history::History`)
//! - any failure → `{"error":"..."}`

mod client;
mod clients;

pub use clients::MAX_CLIENTS;

pub use client::{
    flush, get_history, get_status, stream_flow_lines, stream_flows, watch_transitions, ClientError,
};

use std::io;
use std::os::unix::net::UnixStream as StdStream;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader as TokioBufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::broadcast::error::RecvError;
use tracing::{debug, warn};

use crate::conntrack::{unix_ms, FlowRecord, PathFilter, Transition, WatcherHandle};
use crate::view::status::Status;

pub const DEFAULT_SOCKET: &str = "/run/offloadd.sock";
const MAX_REQUEST: u64 = 4096;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "request", rename_all = "lowercase")]
pub enum Request {
    Status,
    Flows {
        #[serde(default)]
        path: Option<PathFilter>,
    },
    Watch,
    Flush,
    History,
}

/// What `{"request":"flush"}` answers: the flowtable was replaced now, so every flow
/// that was offloaded takes the slow path (the whole ruleset) on its next packet.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Flushed {
    /// False when there was nothing to flush (table inet offloadd not applied yet).
    pub flushed: bool,
    pub took_ms: f64,
    /// Offloaded flows just before (sw + hw), when the conntrack watcher runs.
    pub offloaded_before: Option<u64>,
}

/// A flush asked for over the socket, and where its outcome goes.
pub type FlushAsk = tokio::sync::oneshot::Sender<Result<Flushed, String>>;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WatchLine {
    Transition(Transition),
    Lagged(u64),
    Error(String),
}

impl WatchLine {
    /// The next line for a watcher's subscriber; `None` once the watcher is gone.
    pub async fn next(rx: &mut tokio::sync::broadcast::Receiver<Transition>) -> Option<WatchLine> {
        match rx.recv().await {
            Ok(t) => Some(WatchLine::Transition(t)),
            Err(RecvError::Lagged(n)) => Some(WatchLine::Lagged(n)),
            Err(RecvError::Closed) => None,
        }
    }
}

/// What the server needs: the daemon's view and the watcher, if it runs.
#[derive(Clone)]
pub struct Shared {
    pub status: Arc<Mutex<Status>>,
    pub watcher: Option<WatcherHandle>,
    /// The daemon's loop, which alone changes the ruleset.
    pub flush: tokio::sync::mpsc::Sender<FlushAsk>,
    /// The config's exclusions, to say why a slow flow is not offloaded.
    pub rules: Arc<Mutex<crate::view::explain::Rules>>,
    /// The last path changes, for `offloadd why`.
    pub history: Arc<Mutex<crate::view::history::History>>,
}

/// Binds the socket, refusing to take over one a running daemon still answers on.
pub fn bind(path: &Path) -> anyhow::Result<UnixListener> {
    if StdStream::connect(path).is_ok() {
        anyhow::bail!(
            "{}: another offloadd is already running (stop it first)",
            path.display()
        );
    }
    match std::fs::remove_file(path) {
        Ok(()) => debug!(path = %path.display(), "removed a stale control socket"),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => anyhow::bail!(
            "{}: cannot remove the old control socket: {e}",
            path.display()
        ),
    }
    let listener = UnixListener::bind(path).map_err(|e| {
        anyhow::anyhow!("{}: cannot create the control socket: {e}", path.display())
    })?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}

pub async fn serve(listener: UnixListener, shared: Shared) {
    let clients = clients::Clients::default();
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                let Some(ticket) = clients.admit(MAX_CLIENTS) else {
                    tokio::spawn(busy(stream));
                    continue;
                };
                let shared = shared.clone();
                tokio::spawn(async move {
                    if let Err(e) = handle(stream, shared, ticket).await {
                        debug!("control client: {e}");
                    }
                });
            }
            Err(e) => {
                warn!("control socket: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// One request line as the client sent it (at most MAX_REQUEST bytes, newline
/// included or not); the error is what the client is told after "bad request: ".
pub fn parse_request(bytes: &[u8]) -> Result<Request, String> {
    let line = std::str::from_utf8(bytes).map_err(|_| "not UTF-8".to_string())?;
    serde_json::from_str::<Request>(line.trim()).map_err(|e| e.to_string())
}

/// Every slot is streaming: said at once, so the client does not wait for nothing.
async fn busy(mut stream: UnixStream) {
    let line = format!(
        "{}\n",
        error_json(format!(
            "busy: {MAX_CLIENTS} clients are being served; try again"
        ))
    );
    let _ = tokio::time::timeout(WRITE_TIMEOUT, stream.write_all(line.as_bytes())).await;
}

async fn handle(stream: UnixStream, shared: Shared, mut ticket: clients::Ticket) -> io::Result<()> {
    // The file mode keeps others out; the peer check closes the window between bind
    // and chmod (and covers a socket someone opened up).
    let uid = stream.peer_cred()?.uid();
    let (read, mut write) = stream.into_split();
    let mut bytes = Vec::new();
    let mut reader = TokioBufReader::new(tokio::io::AsyncReadExt::take(read, MAX_REQUEST));
    tokio::select! {
        read = tokio::time::timeout(Duration::from_secs(5), reader.read_until(b'\n', &mut bytes)) => {
            read.map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "no request within 5 s"))??;
        }
        _ = &mut ticket.evicted => {
            return Err(io::Error::new(io::ErrorKind::TimedOut, "closed idle: the slot went to a newer client"));
        }
    }
    ticket.serving();
    // Answered only after the request is read, so the client sees why, not a broken pipe.
    // SAFETY: geteuid has no preconditions.
    if uid != 0 && uid != unsafe { libc::geteuid() } {
        let answer = error_json("permission denied: only root may ask offloadd".into());
        return write.write_all(format!("{answer}\n").as_bytes()).await;
    }
    let answer = match parse_request(&bytes) {
        Err(e) => error_json(format!("bad request: {e}")),
        Ok(Request::Status) => serde_json::to_string(&status(&shared).await)?,
        Ok(Request::Flows { path }) => match &shared.watcher {
            None => error_json("the conntrack watcher is not running (see offloadd status)".into()),
            Some(w) => match w.flows(path).await {
                Some(chunks) => {
                    let explain = explain_context(&shared);
                    return send_flows(chunks, &explain, write).await;
                }
                None => error_json("the conntrack watcher stopped".into()),
            },
        },
        Ok(Request::Watch) => return watch(&shared, write).await,
        Ok(Request::Flush) => flush_now(&shared).await,
        Ok(Request::History) => {
            let h = shared.history.lock().unwrap().clone();
            serde_json::to_string(&h)?
        }
    };
    write.write_all(answer.as_bytes()).await?;
    write.write_all(b"\n").await
}

/// A client that reads nothing for this long is dropped: a listing holds the dump thread.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// Writes a flow list as it comes: one JSON object a line, then `{"end":N}` (so a
/// client tells a complete list from a daemon that stopped half way).
///
/// The daemon has one runtime thread, and tokio lets a task go on while what it awaits
/// is ready, up to its cooperative budget of 128 operations. A listing whose dump keeps
/// up and whose client reads fast is always ready, so without a yield it formats tens of
/// chunks (tens of milliseconds at 100k entries) while a `status` waits: it gives way
/// after each chunk of 256.
async fn send_flows<W: tokio::io::AsyncWrite + Unpin>(
    mut chunks: tokio::sync::mpsc::Receiver<Vec<FlowRecord>>,
    explain: &crate::view::explain::Context,
    mut write: W,
) -> io::Result<()> {
    let mut n = 0usize;
    let mut buf = Vec::new();
    // Asked only for flows nothing else explains, each address once, a few hundred at most.
    let mut routes = crate::link::Routes::open(256).ok();
    while let Some(mut chunk) = chunks.recv().await {
        buf.clear();
        for r in &mut chunk {
            r.why = explain.why(r);
            if let (Some(routes), Some(crate::view::explain::Reason::Unknown)) =
                (routes.as_mut(), r.why.as_ref().map(|w| w.reason))
            {
                let (to, back) = (
                    routes.device(r.reply.src).await,
                    routes.device(r.orig.src).await,
                );
                if let Some(w) = explain.outside_device(r, to, back) {
                    r.why = Some(w);
                }
            }
            serde_json::to_writer(&mut buf, r)?;
            buf.push(b'\n');
        }
        n += chunk.len();
        put(&mut write, &buf).await?;
        tokio::task::yield_now().await;
    }
    put(&mut write, format!("{{\"end\":{n}}}\n").as_bytes()).await
}

async fn put<W: tokio::io::AsyncWrite + Unpin>(write: &mut W, bytes: &[u8]) -> io::Result<()> {
    tokio::time::timeout(WRITE_TIMEOUT, write.write_all(bytes))
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "the client stopped reading"))?
}

async fn flush_now(shared: &Shared) -> String {
    let (tx, rx) = tokio::sync::oneshot::channel();
    if shared.flush.send(tx).await.is_err() {
        return error_json("the daemon is stopping".into());
    }
    match rx.await {
        Ok(Ok(f)) => serde_json::to_string(&f).unwrap_or_default(),
        Ok(Err(e)) => error_json(e),
        Err(_) => error_json("the daemon is stopping".into()),
    }
}

fn explain_context(shared: &Shared) -> crate::view::explain::Context {
    let rules = shared.rules.lock().unwrap().clone();
    let st = shared.status.lock().unwrap().clone();
    crate::view::explain::Context::now(&rules, &st, crate::link::local_addresses())
}

/// The status as a client sees it: the daemon's view with conntrack counts of now.
pub async fn status(shared: &Shared) -> Status {
    let mut s = shared.status.lock().unwrap().clone();
    s.now_unix_ms = unix_ms();
    s.conntrack_accounting = crate::conntrack::accounting_on();
    if let Some(w) = &shared.watcher {
        s.conntrack = w.stats().await;
    }
    s
}

async fn watch(shared: &Shared, mut write: tokio::net::unix::OwnedWriteHalf) -> io::Result<()> {
    let Some(w) = &shared.watcher else {
        let line = serde_json::to_string(&WatchLine::Error(
            "the conntrack watcher is not running".into(),
        ))?;
        return write.write_all(format!("{line}\n").as_bytes()).await;
    };
    let mut rx = w.subscribe();
    loop {
        let Some(line) = WatchLine::next(&mut rx).await else {
            return Ok(());
        };
        let mut text = serde_json::to_string(&line)?;
        text.push('\n');
        // A watcher that stops reading is dropped like a listing's, not kept forever
        // with its transitions piling up in the socket.
        put(&mut write, text.as_bytes()).await?;
    }
}

pub(crate) fn error_json(message: String) -> String {
    serde_json::json!({ "error": message }).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_have_the_documented_shape() {
        let r: Request = serde_json::from_str(r#"{"request":"flows","path":"offloaded"}"#).unwrap();
        assert_eq!(
            r,
            Request::Flows {
                path: Some(PathFilter::Offloaded)
            }
        );
        let r: Request = serde_json::from_str(r#"{"request":"flows"}"#).unwrap();
        assert_eq!(r, Request::Flows { path: None });
        assert_eq!(
            serde_json::to_string(&Request::Status).unwrap(),
            r#"{"request":"status"}"#
        );
        assert!(serde_json::from_str::<Request>(r#"{"request":"drop"}"#).is_err());
    }

    fn offloaded_record(sport: u16) -> FlowRecord {
        use crate::conntrack::{Entry, FlowKey, Tuple, IPS_OFFLOAD, IPS_SEEN_REPLY};
        let t = Tuple {
            src: "198.18.0.2".parse().unwrap(),
            dst: "198.19.0.2".parse().unwrap(),
            sport,
            dport: 5201,
        };
        let key = FlowKey {
            proto: 17,
            zone: 0,
            orig: t,
        };
        let status = IPS_SEEN_REPLY | IPS_OFFLOAD;
        let e = Entry {
            key,
            reply: t,
            mark: 0,
            tcp_state: None,
            status,
            counters: None,
        };
        FlowRecord::from_entry(&e)
    }

    /// A `status` that comes while a listing streams is answered after at most a chunk
    /// or two of it, not after the listing used up tokio's budget (what made status's
    /// p99 30-38 ms at 100k entries with listings back to back).
    #[tokio::test]
    async fn a_listing_gives_way_to_other_requests_after_each_chunk() {
        const CHUNKS: usize = 40;
        let (tx, rx) = tokio::sync::mpsc::channel(CHUNKS);
        for c in 0..CHUNKS {
            let chunk = (0..256)
                .map(|i| offloaded_record((c * 256 + i) as u16))
                .collect();
            tx.try_send(chunk).unwrap();
        }
        let lister = tokio::spawn(async move {
            send_flows(
                rx,
                &crate::view::explain::Context::default(),
                tokio::io::sink(),
            )
            .await
        });
        // Stands for the status request: queued behind the listing on this one thread.
        let probe_tx = tx.clone();
        let probe = tokio::spawn(async move { probe_tx.capacity() });
        let taken = probe.await.unwrap();
        drop(tx);
        lister.await.unwrap().unwrap();
        assert!(
            taken <= 2,
            "the listing wrote {taken} of {CHUNKS} chunks before another task ran"
        );
    }

    #[test]
    fn request_lines_parse_with_or_without_newline_and_reject_the_rest() {
        assert_eq!(
            parse_request(b"{\"request\":\"status\"}\n"),
            Ok(Request::Status)
        );
        assert_eq!(
            parse_request(b"  {\"request\":\"watch\"}"),
            Ok(Request::Watch)
        );
        assert_eq!(parse_request(b"\xff\xfe{}\n").unwrap_err(), "not UTF-8");
        assert!(parse_request(b"").unwrap_err().contains("EOF"));
        assert!(
            parse_request(b"{\"request\":\"flows\",\"path\":\"nowhere\"}")
                .unwrap_err()
                .contains("unknown variant")
        );
    }
}
