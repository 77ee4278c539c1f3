//! The client side of the control socket: one request, its answer parsed once.

use std::io::{self, BufRead, BufReader, Write};
use std::os::unix::net::UnixStream as StdStream;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::{Flushed, Request, WatchLine};
use crate::conntrack::{FlowRecord, PathFilter};
use crate::view::status::Status;

/// Why a client call failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("offloadd is not running (nothing answers on {0}); start it with /etc/init.d/offloadd start or systemctl start offloadd")]
    NotRunning(PathBuf),
    #[error("{0}: permission denied; the control socket is root only (run with sudo)")]
    Denied(PathBuf),
    #[error("{path}: {error}")]
    Io { path: PathBuf, error: io::Error },
    #[error("the daemon answered: {0}")]
    Daemon(String),
}

/// Sends one request; returns the reader positioned at the answer.
fn call(path: &Path, req: &Request) -> Result<BufReader<StdStream>, ClientError> {
    let io_err = |error| ClientError::Io {
        path: path.to_owned(),
        error,
    };
    let mut s = StdStream::connect(path).map_err(|e| match e.kind() {
        io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused => {
            ClientError::NotRunning(path.to_owned())
        }
        io::ErrorKind::PermissionDenied => ClientError::Denied(path.to_owned()),
        _ => io_err(e),
    })?;
    let mut line = serde_json::to_string(req).expect("requests serialize");
    line.push('\n');
    s.write_all(line.as_bytes()).map_err(io_err)?;
    Ok(BufReader::new(s))
}

fn answer<T: for<'de> Deserialize<'de>>(path: &Path, req: &Request) -> Result<T, ClientError> {
    let mut r = call(path, req)?;
    let mut line = String::new();
    r.read_line(&mut line).map_err(|error| ClientError::Io {
        path: path.to_owned(),
        error,
    })?;
    parse_answer(&line)
}

#[derive(Deserialize)]
struct ErrorAnswer {
    error: String,
}

/// One answer line, parsed once into what was asked for. The daemon writes a failure as
/// `{"error":...}` and nothing else starts so (a status is `{"version":...`, a list `[`),
/// so the prefix tells them apart without a generic JSON tree of the whole answer first
/// (at 260k flows that tree was most of `offloadd flows`' 747 MiB).
fn parse_answer<T: for<'de> Deserialize<'de>>(line: &str) -> Result<T, ClientError> {
    if line.starts_with("{\"error\"") {
        if let Ok(e) = serde_json::from_str::<ErrorAnswer>(line) {
            return Err(ClientError::Daemon(e.error));
        }
    }
    serde_json::from_str(line).map_err(|e| {
        ClientError::Daemon(format!(
            "unreadable answer ({e}); is the daemon the same version as this command?"
        ))
    })
}

pub fn get_status(path: &Path) -> Result<Status, ClientError> {
    answer(path, &Request::Status)
}

/// The daemon's last path changes (oldest first).
pub fn get_history(path: &Path) -> Result<crate::view::history::History, ClientError> {
    answer(path, &Request::History)
}

/// Asks the daemon to flush its flowtable now; returns once it has.
pub fn flush(path: &Path) -> Result<Flushed, ClientError> {
    answer(path, &Request::Flush)
}

/// Streams the daemon's flow list to `f` (until it returns false); returns how many.
pub fn stream_flows(
    path: &Path,
    filter: Option<PathFilter>,
    mut f: impl FnMut(FlowRecord) -> bool,
) -> Result<usize, ClientError> {
    let mut bad = None;
    let n = stream_flow_lines(path, filter, |line| match parse_answer(line) {
        Ok(r) => f(r),
        Err(e) => {
            bad = Some(e);
            false
        }
    })?;
    bad.map_or(Ok(n), Err)
}

/// Streams the daemon's flow list to `f` as the JSON lines it sent (one flow each, not
/// parsed: `flows --json` passes them on), until `f` returns false; returns how many.
pub fn stream_flow_lines(
    path: &Path,
    filter: Option<PathFilter>,
    mut f: impl FnMut(&str) -> bool,
) -> Result<usize, ClientError> {
    let r = call(path, &Request::Flows { path: filter })?;
    let mut n = 0;
    for line in r.lines() {
        let line = line.map_err(|error| ClientError::Io {
            path: path.to_owned(),
            error,
        })?;
        if line.starts_with("{\"end\"") {
            return Ok(n);
        }
        if line.starts_with("{\"error\"") {
            return Err(parse_answer::<ErrorAnswer>(&line)
                .err()
                .unwrap_or_else(|| ClientError::Daemon(line.clone())));
        }
        n += 1;
        if !f(&line) {
            return Ok(n);
        }
    }
    Err(ClientError::Daemon(format!(
        "the list ended after {n} flows without its end mark (did the daemon stop?)"
    )))
}

/// Streams transitions to `f` until the daemon closes or `f` returns false.
pub fn watch_transitions(
    path: &Path,
    mut f: impl FnMut(WatchLine) -> bool,
) -> Result<(), ClientError> {
    let r = call(path, &Request::Watch)?;
    for line in r.lines() {
        let line = line.map_err(|error| ClientError::Io {
            path: path.to_owned(),
            error,
        })?;
        let w = serde_json::from_str(&line)
            .map_err(|e| ClientError::Daemon(format!("unreadable line ({e})")))?;
        if !f(w) {
            break;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::error_json;

    #[test]
    fn answers_parse_once_into_what_was_asked_or_the_daemons_error() {
        let err = parse_answer::<Vec<FlowRecord>>(&error_json("the watcher is not running".into()));
        assert!(matches!(err, Err(ClientError::Daemon(e)) if e == "the watcher is not running"));
        let flows: Vec<FlowRecord> = parse_answer("[]\n").unwrap();
        assert!(flows.is_empty());
        let bad = parse_answer::<Vec<FlowRecord>>("{\"version\":1}\n");
        assert!(matches!(bad, Err(ClientError::Daemon(e)) if e.starts_with("unreadable answer")));
    }

    #[test]
    fn client_reports_a_daemon_that_is_not_running() {
        let dir = std::env::temp_dir().join(format!("offloadd-test-{}", std::process::id()));
        let e = get_status(&dir.join("none.sock")).unwrap_err();
        assert!(matches!(e, ClientError::NotRunning(_)), "{e}");
        assert!(e.to_string().contains("systemctl start offloadd"));
    }
}
