//! The thread that owns the dump socket. Dumps and lookups block on the kernel (a full
//! dump of 100k entries takes ~0.2 s here, seconds on a router CPU), so they run here,
//! off the runtime, and their entries come back in small chunks: the watcher goes on
//! reading events and answering `status` meanwhile.

use tokio::sync::mpsc;

use super::{CtError, CtSocket, DumpCount, DumpFilter, Entry, FlowKey, LookupCount};

/// Entries per chunk from the dump thread to the actor, and chunks in flight: together
/// at most ~4 × 256 × 140 bytes outside the tracker during a dump (1024-entry chunks four
/// deep were ~0.9 MiB that came and went, and showed as RSS noise in the soak).
pub const CHUNK: usize = 256;
pub const CHUNKS_IN_FLIGHT: usize = 2;

/// What the watcher asks the kernel.
#[derive(Debug)]
pub enum Request {
    Dump(DumpFilter),
    /// Look these flows up one by one (see `lookup.rs`).
    Lookup(Vec<FlowKey>),
}

/// How a request ended. A lookup hands its keys back, so the watcher need not keep a
/// copy while it runs.
#[derive(Debug)]
pub enum Outcome {
    Dump(DumpCount),
    Lookup(LookupCount, Vec<FlowKey>),
}

/// What the dump thread sends back for one request.
pub enum DumpMsg {
    Entries(Vec<Entry>),
    Done(Result<Outcome, CtError>),
}

pub type DumpRequest = (Request, mpsc::Sender<DumpMsg>);

/// Starts the thread; it ends when the returned sender is dropped.
pub fn spawn_dumper(mut sock: CtSocket) -> Result<std::sync::mpsc::Sender<DumpRequest>, CtError> {
    let (tx, rx) = std::sync::mpsc::channel::<DumpRequest>();
    std::thread::Builder::new()
        .name("ct-dump".into())
        .spawn(move || {
            while let Ok((request, reply)) = rx.recv() {
                let mut chunk = Vec::with_capacity(CHUNK);
                let mut push = |e: Entry| {
                    chunk.push(e);
                    if chunk.len() == CHUNK {
                        let full = std::mem::replace(&mut chunk, Vec::with_capacity(CHUNK));
                        let _ = reply.blocking_send(DumpMsg::Entries(full));
                    }
                };
                let result = match request {
                    Request::Dump(filter) => {
                        sock.dump(filter, |ev| push(ev.entry)).map(Outcome::Dump)
                    }
                    Request::Lookup(keys) => sock
                        .lookup(&keys, |ev| push(ev.entry))
                        .map(|count| Outcome::Lookup(count, keys)),
                };
                if !chunk.is_empty() {
                    let _ = reply.blocking_send(DumpMsg::Entries(chunk));
                }
                let _ = reply.blocking_send(DumpMsg::Done(result));
            }
        })
        .map_err(|error| CtError::Io {
            what: "starting the dump thread",
            error,
        })?;
    Ok(tx)
}
