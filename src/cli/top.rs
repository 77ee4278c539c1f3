//! `offloadd top`: flows by throughput, refreshed every second, with totals per path,
//! from conntrack's byte and packet counters between two listings. Slow flows have
//! counters only with net.netfilter.nf_conntrack_acct=1 (OpenWrt sets it; most servers
//! do not: `[conntrack] accounting = true`); offloaded ones from the flowtable's
//! `counter` (on by default).

use std::collections::HashMap;
use std::fmt::Write as _;

use serde::Serialize;

use crate::conntrack::{proto_name, Counters, FlowKey, FlowRecord, Path};
use crate::report::bytes;

/// One flow's rates over the last interval, per direction.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Row {
    pub key: FlowKey,
    pub path: Path,
    pub orig_bytes_per_s: f64,
    pub reply_bytes_per_s: f64,
    pub packets_per_s: f64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Total {
    pub flows: u64,
    pub bytes_per_s: f64,
    pub packets_per_s: f64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Frame {
    pub interval_s: f64,
    /// Busiest first.
    pub rows: Vec<Row>,
    pub slow: Total,
    pub sw: Total,
    pub hw: Total,
    /// Flows listed without counters (accounting off for slow flows, `counter` off).
    pub without_counters: u64,
}

/// The counters of the previous listing, by flow.
pub type Previous = HashMap<FlowKey, Counters>;

/// Rates from `prev` to `now` over `interval_s`; returns the frame and the counters to
/// keep for the next one. A flow seen for the first time has no rate until the next
/// frame (its counters hold its whole life, not this interval). A counter that went
/// down belongs to a new connection with the same tuple: counted from zero. Flows that
/// vanished are simply not listed.
pub fn frame(prev: &Previous, now: Vec<FlowRecord>, interval_s: f64) -> (Frame, Previous) {
    let mut next = Previous::with_capacity(now.len());
    let mut f = Frame {
        interval_s,
        ..Frame::default()
    };
    for r in now {
        let key = FlowKey {
            proto: r.proto,
            zone: r.zone,
            orig: r.orig,
        };
        let total = match r.path {
            Path::Slow => &mut f.slow,
            Path::Sw => &mut f.sw,
            Path::Hw => &mut f.hw,
        };
        total.flows += 1;
        let Some(c) = r.counters else {
            f.without_counters += 1;
            continue;
        };
        next.insert(key, c);
        let Some(p) = prev.get(&key) else { continue };
        let d = |new: u64, old: u64| if new >= old { new - old } else { new } as f64;
        let ob = d(c.orig_bytes, p.orig_bytes) / interval_s;
        let rb = d(c.reply_bytes, p.reply_bytes) / interval_s;
        let pk =
            (d(c.orig_packets, p.orig_packets) + d(c.reply_packets, p.reply_packets)) / interval_s;
        total.bytes_per_s += ob + rb;
        total.packets_per_s += pk;
        if ob + rb > 0.0 {
            f.rows.push(Row {
                key,
                path: r.path,
                orig_bytes_per_s: ob,
                reply_bytes_per_s: rb,
                packets_per_s: pk,
            });
        }
    }
    f.rows.sort_by(|a, b| {
        let rate = |r: &Row| r.orig_bytes_per_s + r.reply_bytes_per_s;
        rate(b).total_cmp(&rate(a))
    });
    (f, next)
}

fn rate(bytes_per_s: f64) -> String {
    format!("{}/s", bytes(bytes_per_s as u64))
}

/// The text frame, at most `lines` flows.
pub fn text(f: &Frame, lines: usize, accounting_off: bool) -> String {
    let mut o = String::new();
    let all = f.slow.bytes_per_s + f.sw.bytes_per_s + f.hw.bytes_per_s;
    let share = |t: &Total| {
        if all > 0.0 {
            100.0 * t.bytes_per_s / all
        } else {
            0.0
        }
    };
    for (name, t) in [("slow", &f.slow), ("software", &f.sw), ("hardware", &f.hw)] {
        let _ = writeln!(
            o,
            "{name:<9} {:>7} flows {:>12} {:>9.0} pkt/s {:>5.1}%",
            t.flows,
            rate(t.bytes_per_s),
            t.packets_per_s,
            share(t)
        );
    }
    if accounting_off {
        let _ = writeln!(o, "conntrack accounting is off (net.netfilter.nf_conntrack_acct = 0): slow flows have no counters and show no rate; set [conntrack] accounting = true (or sysctl -w net.netfilter.nf_conntrack_acct=1) for new flows");
    } else if f.without_counters > 0 {
        let _ = writeln!(o, "{} flows have no counters (created before accounting was on, or [offload] counter = false)", f.without_counters);
    }
    let _ = writeln!(
        o,
        "\n{:<4} {:<3} {:<47} {:>12} {:>12} {:>9}",
        "path", "", "flow", "orig", "reply", "pkt/s"
    );
    for r in f.rows.iter().take(lines) {
        let _ = writeln!(
            o,
            "{:<4} {:<3} {:<47} {:>12} {:>12} {:>9.0}",
            r.path.to_string(),
            proto_name(r.key.proto),
            r.key.orig.to_string(),
            rate(r.orig_bytes_per_s),
            rate(r.reply_bytes_per_s),
            r.packets_per_s
        );
    }
    o
}

/// The live view: a listing every `every`, a frame from each two. `once`: one frame.
/// Each flow's counters are held between frames (about 100 bytes a flow): on a big
/// gateway `path` narrows the listing (`--path offloaded` is the daemon's own list).
pub fn run(
    socket: &std::path::Path,
    path: Option<crate::conntrack::PathFilter>,
    opts: Options,
) -> anyhow::Result<()> {
    use std::io::Write;
    let mut prev = Previous::new();
    let mut last: Option<std::time::Instant> = None;
    let mut warned = false;
    loop {
        let started = std::time::Instant::now();
        let mut now = Vec::new();
        super::flows::each(
            socket,
            path,
            || {
                if !warned {
                    eprintln!("{}", super::flows::NOT_RUNNING_NOTE);
                }
            },
            |f| {
                now.push(f.clone());
                true
            },
        )?;
        warned = true;
        let interval = last.map(|t| started.duration_since(t).as_secs_f64());
        last = Some(started);
        let (f, next) = frame(&prev, now, interval.unwrap_or(1.0));
        prev = next;
        if let Some(interval) = interval {
            let mut out = std::io::stdout().lock();
            let shown = if opts.json {
                serde_json::to_string(&f)? + "\n"
            } else {
                let clear = if opts.once { "" } else { "\x1b[H\x1b[2J" };
                // The daemon's namespace is the one whose flows are listed.
                let acct = crate::control::get_status(socket)
                    .ok()
                    .and_then(|s| s.conntrack_accounting)
                    .or_else(crate::conntrack::accounting_on);
                let head = format!("offloadd top: every {interval:.1} s (Ctrl-C stops)\n");
                format!("{clear}{head}{}", text(&f, opts.lines, acct == Some(false)))
            };
            // A closed pipe or terminal ends the view.
            if out
                .write_all(shown.as_bytes())
                .and_then(|_| out.flush())
                .is_err()
                || opts.once
            {
                return Ok(());
            }
        }
        std::thread::sleep(opts.every.saturating_sub(started.elapsed()));
    }
}

pub struct Options {
    pub once: bool,
    pub json: bool,
    pub lines: usize,
    pub every: std::time::Duration,
}

/// Whether the kernel counts bytes of new conntrack entries (this namespace).

#[cfg(test)]
#[path = "top_tests.rs"]
mod tests;
