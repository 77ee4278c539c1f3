//! The link actor: one rtnetlink socket subscribed to RTNLGRP_LINK, a dump to start
//! from, then every RTM_NEWLINK / RTM_DELLINK applied to the snapshot it publishes.
//!
//! Subscribing happens before the dump, so nothing between the two is missed; events
//! queued during the dump are applied after it, which is safe because `update` is
//! idempotent and deletes by index. When the socket overruns (the kernel dropped
//! events), the actor dumps again.

use std::io;

use futures_util::{StreamExt, TryStreamExt};
use netlink_packet_core::NetlinkPayload;
use netlink_packet_route::link::{LinkAttribute, LinkMessage};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use rtnetlink::{new_multicast_connection, Handle, MulticastGroup};
use tokio::sync::watch;
use tracing::{debug, warn};

use super::{LinkEvent, LinkSnapshot};

/// Starts the link actor; the receiver always holds the current snapshot and is marked
/// changed whenever a device appears, disappears, is renamed or re-parented.
pub async fn spawn_link_watcher() -> io::Result<watch::Receiver<LinkSnapshot>> {
    let (conn, handle, mut messages) = new_multicast_connection(&[MulticastGroup::Link])?;
    tokio::spawn(conn);
    let first = dump(&handle).await?;
    let (tx, rx) = watch::channel(first);
    tokio::spawn(async move {
        while let Some((msg, _)) = messages.next().await {
            match msg.payload {
                NetlinkPayload::InnerMessage(m) => {
                    if let Some(ev) = decode(&m) {
                        debug!(event = ?ev, "link event");
                        tx.send_if_modified(|s| s.update(&ev));
                    }
                }
                NetlinkPayload::Overrun(_) => {
                    warn!("link events were lost (socket overrun); listing devices again");
                    match dump(&handle).await {
                        Ok(s) => {
                            tx.send_if_modified(|old| {
                                let changed = *old != s;
                                *old = s;
                                changed
                            });
                        }
                        Err(e) => warn!("listing network devices: {e}"),
                    }
                }
                _ => {}
            }
            if tx.is_closed() {
                return;
            }
        }
        warn!("the rtnetlink link socket closed; device changes are no longer followed");
    });
    Ok(rx)
}

async fn dump(handle: &Handle) -> io::Result<LinkSnapshot> {
    let mut snap = LinkSnapshot::default();
    let mut links = handle.link().get().execute();
    while let Some(m) = links
        .try_next()
        .await
        .map_err(|e| io::Error::other(format!("listing network devices: {e}")))?
    {
        if let Some(ev) = decode_link(&m, true) {
            snap.update(&ev);
        }
    }
    Ok(snap)
}

pub fn decode(m: &RouteNetlinkMessage) -> Option<LinkEvent> {
    match m {
        RouteNetlinkMessage::NewLink(l) => decode_link(l, true),
        RouteNetlinkMessage::DelLink(l) => decode_link(l, false),
        _ => None,
    }
}

/// AF_BRIDGE link messages describe bridge *ports* (a port leaving a bridge is an
/// AF_BRIDGE RTM_DELLINK while the device stays): only AF_UNSPEC ones are devices.
fn decode_link(l: &LinkMessage, new: bool) -> Option<LinkEvent> {
    if l.header.interface_family == AddressFamily::Bridge {
        return None;
    }
    let index = l.header.index;
    if !new {
        return Some(LinkEvent::Del { index });
    }
    let mut name = None;
    let mut master = None;
    for a in &l.attributes {
        match a {
            LinkAttribute::IfName(n) => name = Some(n.clone()),
            LinkAttribute::Controller(m) => master = Some(*m),
            _ => {}
        }
    }
    Some(LinkEvent::New {
        index,
        name: name?,
        master,
    })
}
