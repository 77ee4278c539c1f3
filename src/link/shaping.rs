//! Traffic shaping (SQM/QoS) on flowtable devices. Software offload keeps shaping: the
//! fast path transmits through the device's qdisc, and SQM's ingress redirect to an ifb
//! runs at tc ingress, before the flowtable's netfilter ingress hook. Hardware offload
//! bypasses both, so a shaped device stays on software offload.

use std::collections::BTreeMap;
use std::ffi::CStr;
use std::io;
use std::path::Path;

use futures_util::TryStreamExt;
use netlink_packet_route::tc::{TcAttribute, TcMessage};

use crate::config::uci::parse_uci;

/// Qdiscs that shape (limit rate). fq_codel alone is the default qdisc and only counts
/// on an ifb, where SQM puts its ingress shaper.
const SHAPERS: [&str; 4] = ["cake", "htb", "hfsc", "tbf"];

/// Kinds of qdisc per interface index, from one rtnetlink dump.
pub async fn qdisc_kinds() -> io::Result<Vec<(u32, String)>> {
    let (conn, handle, _) = rtnetlink::new_connection()?;
    let task = tokio::spawn(conn);
    let mut out = Vec::new();
    let mut dump = handle.qdisc().get().execute();
    let result = loop {
        match dump.try_next().await {
            Ok(Some(m)) => {
                if let Some(kind) = kind_of(&m) {
                    out.push((m.header.index as u32, kind));
                }
            }
            Ok(None) => break Ok(out),
            Err(e) => break Err(io::Error::other(format!("listing qdiscs: {e}"))),
        }
    };
    task.abort();
    result
}

fn kind_of(m: &TcMessage) -> Option<String> {
    m.attributes.iter().find_map(|a| match a {
        TcAttribute::Kind(k) => Some(k.clone()),
        _ => None,
    })
}

/// Which of `devices` are shaped, and by what: a shaping qdisc on the device, one on
/// its SQM ingress ifb (`ifb4<dev>`), or an enabled `/etc/config/sqm` queue for it.
/// `names` maps interface index to name. Pure.
pub fn shaped(
    devices: &[String],
    qdiscs: &[(u32, String)],
    names: &BTreeMap<u32, String>,
    sqm_config: Option<&str>,
) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for (index, kind) in qdiscs {
        let Some(name) = names.get(index) else {
            continue;
        };
        let on_ifb = name.starts_with("ifb");
        if !(SHAPERS.contains(&kind.as_str()) || (on_ifb && kind == "fq_codel")) {
            continue;
        }
        for d in devices {
            if name == d {
                out.entry(d.clone())
                    .or_insert(format!("{kind} qdisc on {d}"));
            } else if *name == format!("ifb4{d}") {
                out.entry(d.clone())
                    .or_insert(format!("{kind} qdisc on {name} (SQM ingress)"));
            }
        }
    }
    if let Some(file) = sqm_config.and_then(|t| parse_uci(t).ok()) {
        for q in file.of_type("queue") {
            let on = q.single("enabled").is_some_and(|(v, _)| v == "1");
            if let (true, Some((iface, line))) = (on, q.single("interface")) {
                if devices.iter().any(|d| d == iface) {
                    out.entry(iface.to_string()).or_insert(format!(
                        "SQM queue enabled for it in /etc/config/sqm:{line}"
                    ));
                }
            }
        }
    }
    out
}

/// Interface index -> name for the current namespace.
pub fn index_names() -> BTreeMap<u32, String> {
    let mut m = BTreeMap::new();
    // SAFETY: as in LinkSnapshot::current: read the array, then free it.
    unsafe {
        let head = libc::if_nameindex();
        if head.is_null() {
            return m;
        }
        let mut p = head;
        while (*p).if_index != 0 && !(*p).if_name.is_null() {
            m.insert(
                (*p).if_index,
                CStr::from_ptr((*p).if_name).to_string_lossy().into_owned(),
            );
            p = p.add(1);
        }
        libc::if_freenameindex(head);
    }
    m
}

/// Reads shaping for `devices` (qdiscs over rtnetlink, /etc/config/sqm if present).
pub async fn shaped_now(devices: &[String]) -> io::Result<BTreeMap<String, String>> {
    let qdiscs = qdisc_kinds().await?;
    let sqm = std::fs::read_to_string(Path::new("/etc/config/sqm")).ok();
    Ok(shaped(devices, &qdiscs, &index_names(), sqm.as_deref()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names() -> BTreeMap<u32, String> {
        [(2, "eth0"), (3, "wan"), (4, "ifb4wan"), (5, "lan1")]
            .into_iter()
            .map(|(i, n)| (i, n.to_string()))
            .collect()
    }

    fn devs(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn cake_on_the_device_or_its_ifb_is_shaping_default_fq_codel_is_not() {
        let q = vec![
            (2, "fq_codel".to_string()),
            (3, "cake".to_string()),
            (4, "fq_codel".to_string()),
            (5, "htb".to_string()),
        ];
        let s = shaped(&devs(&["eth0", "wan", "lan1"]), &q, &names(), None);
        assert_eq!(s.get("wan").unwrap(), "cake qdisc on wan");
        assert_eq!(s.get("lan1").unwrap(), "htb qdisc on lan1");
        assert!(!s.contains_key("eth0"), "{s:?}");
        let only_ifb = shaped(&devs(&["wan"]), &[(4, "fq_codel".into())], &names(), None);
        assert_eq!(only_ifb["wan"], "fq_codel qdisc on ifb4wan (SQM ingress)");
    }

    #[test]
    fn enabled_sqm_queue_counts_disabled_does_not() {
        let sqm = "config queue 'eth1'\n\toption enabled '1'\n\toption interface 'wan'\n\toption qdisc 'cake'\n\nconfig queue\n\toption enabled '0'\n\toption interface 'eth0'\n";
        let s = shaped(&devs(&["wan", "eth0"]), &[], &names(), Some(sqm));
        assert_eq!(s["wan"], "SQM queue enabled for it in /etc/config/sqm:3");
        assert!(!s.contains_key("eth0"));
    }
}
