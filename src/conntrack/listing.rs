//! `flows` for slow flows: the tracker keeps only offloaded and young flows, so a list
//! that includes slow ones comes from a full dump on demand (on the dump thread), with
//! what the tracker knows (time on path, time to offload) added to the flows it keeps.
//! The dump is the kernel's state now, so a flow gone since its last event is not
//! listed, and a path is the kernel's. It is streamed: neither the daemon nor the client
//! holds the whole list.

use std::collections::HashMap;

use tokio::sync::mpsc;
use tracing::warn;

use super::dumper::{DumpMsg, DumpRequest, Request, CHUNKS_IN_FLIGHT};
use super::{sort_flows, DumpFilter, Entry, FlowKey, FlowRecord, PathFilter};

fn key(r: &FlowRecord) -> FlowKey {
    FlowKey {
        proto: r.proto,
        zone: r.zone,
        orig: r.orig,
    }
}

/// The kept record of a dumped entry, updated from it; without history if the tracker
/// does not keep the flow or had it on another path.
fn record(e: &Entry, kept: Option<FlowRecord>) -> FlowRecord {
    let now = FlowRecord::from_entry(e);
    match kept {
        Some(k) if k.path == now.path => FlowRecord {
            on_path_ms: k.on_path_ms,
            to_offload_ms: k.to_offload_ms,
            why: k.why,
            ..now
        },
        Some(k) => FlowRecord {
            to_offload_ms: k.to_offload_ms,
            ..now
        },
        None => now,
    }
}

/// Streams the flows `filter` wants from a full dump, in the kernel's order, with
/// `kept` (the tracker's records) merged in, one chunk at a time to `out` (which bounds
/// what waits: the dump thread blocks while the client reads). If the dump fails, the
/// kept records not yet sent end the list.
pub async fn stream(
    dumps: std::sync::mpsc::Sender<DumpRequest>,
    filter: Option<PathFilter>,
    kept: Vec<FlowRecord>,
    out: mpsc::Sender<Vec<FlowRecord>>,
) {
    let (tx, mut rx) = mpsc::channel(CHUNKS_IN_FLIGHT);
    if dumps.send((Request::Dump(DumpFilter::All), tx)).is_err() {
        let _ = out.send(kept).await;
        return;
    }
    let mut kept: HashMap<FlowKey, FlowRecord> = kept.into_iter().map(|r| (key(&r), r)).collect();
    while let Some(msg) = rx.recv().await {
        match msg {
            DumpMsg::Entries(entries) => {
                let chunk: Vec<FlowRecord> = entries
                    .iter()
                    .map(|e| record(e, kept.remove(&e.key)))
                    .filter(|r| filter.is_none_or(|f| f.matches(r.path)))
                    .collect();
                // A client that hung up: the dump thread finishes the walk alone.
                if !chunk.is_empty() && out.send(chunk).await.is_err() {
                    return;
                }
                // Gives way to the rest of the runtime thread (status, events) after
                // each chunk, as control's send_flows does.
                tokio::task::yield_now().await;
            }
            DumpMsg::Done(Ok(_)) => return,
            DumpMsg::Done(Err(e)) => {
                warn!("listing flows: the conntrack dump failed ({e}); listing the flows offloadd keeps");
                let mut rest: Vec<FlowRecord> = kept
                    .into_values()
                    .filter(|r| filter.is_none_or(|f| f.matches(r.path)))
                    .collect();
                sort_flows(&mut rest);
                let _ = out.send(rest).await;
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conntrack::{Path, Tuple, IPS_OFFLOAD, IPS_SEEN_REPLY};

    fn entry(status: u32) -> Entry {
        let t = Tuple {
            src: "198.18.0.2".parse().unwrap(),
            dst: "198.19.0.2".parse().unwrap(),
            sport: 40000,
            dport: 5201,
        };
        Entry {
            key: FlowKey {
                proto: 6,
                zone: 0,
                orig: t,
            },
            reply: t,
            mark: 0,
            tcp_state: Some(3),
            status,
            counters: None,
        }
    }

    #[test]
    fn a_dumped_entry_keeps_the_trackers_history_only_on_the_same_path() {
        let off = entry(IPS_SEEN_REPLY | IPS_OFFLOAD);
        let mut kept = FlowRecord::from_entry(&off);
        kept.on_path_ms = Some(1500);
        kept.to_offload_ms = Some(3.0);
        let same = record(&off, Some(kept.clone()));
        assert_eq!(
            (same.path, same.on_path_ms, same.to_offload_ms),
            (Path::Sw, Some(1500), Some(3.0))
        );
        // Left the flowtable since the tracker looked: the kernel's path, no time on it.
        let back = record(&entry(IPS_SEEN_REPLY), Some(kept));
        assert_eq!(
            (back.path, back.on_path_ms, back.to_offload_ms),
            (Path::Slow, None, Some(3.0))
        );
        assert_eq!(record(&entry(0), None).on_path_ms, None);
    }
}
