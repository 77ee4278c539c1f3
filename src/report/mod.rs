//! Text for people and for Prometheus, from the values the daemon serves. Pure.

mod metrics;

use std::fmt::Write as _;

use crate::conntrack::{proto_name, FlowRecord, Path, Stats, Transition, Tuple, IPS_SEEN_REPLY};
use crate::view::status::Status;

pub use metrics::metrics;

/// `41 ms`, `2.5 s`, `3m12s`, `2h05m`, `3d04h`.
pub fn duration_ms(ms: f64) -> String {
    if ms < 1000.0 {
        return if ms < 10.0 {
            format!("{ms:.1} ms")
        } else {
            format!("{ms:.0} ms")
        };
    }
    let s = ms / 1000.0;
    if s < 60.0 {
        return format!("{s:.1} s");
    }
    let s = s as u64;
    if s < 3600 {
        format!("{}m{:02}s", s / 60, s % 60)
    } else if s < 86400 {
        format!("{}h{:02}m", s / 3600, s % 3600 / 60)
    } else {
        format!("{}d{:02}h", s / 86400, s % 86400 / 3600)
    }
}

/// SI bytes: `980 B`, `75.1 MB`.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["kB", "MB", "GB", "TB", "PB"];
    if n < 1000 {
        return format!("{n} B");
    }
    let mut v = n as f64;
    let mut unit = "";
    for u in UNITS {
        v /= 1000.0;
        unit = u;
        if v < 1000.0 {
            break;
        }
    }
    format!("{v:.1} {unit}")
}

pub fn tcp_state_name(s: u8) -> &'static str {
    const NAMES: [&str; 10] = [
        "NONE",
        "SYN_SENT",
        "SYN_RECV",
        "ESTABLISHED",
        "FIN_WAIT",
        "CLOSE_WAIT",
        "LAST_ACK",
        "TIME_WAIT",
        "CLOSE",
        "SYN_SENT2",
    ];
    NAMES.get(usize::from(s)).copied().unwrap_or("?")
}

pub fn path_name(p: Path) -> &'static str {
    match p {
        Path::Slow => "slow",
        Path::Sw => "software",
        Path::Hw => "hardware",
    }
}

fn mirrors(orig: &Tuple, reply: &Tuple) -> bool {
    reply.src == orig.dst
        && reply.dst == orig.src
        && reply.sport == orig.dport
        && reply.dport == orig.sport
}

/// One line per flow, like `conntrack -L` plus the path and time on it.
pub fn flow_line(f: &FlowRecord) -> String {
    let mut s = format!(
        "{:<4} {:<3} {}",
        f.path.to_string(),
        proto_name(f.proto),
        f.orig
    );
    if !mirrors(&f.orig, &f.reply) {
        // NAT: the reply direction is not the original reversed.
        let _ = write!(s, " reply {}", f.reply);
    }
    if let Some(st) = f.tcp_state {
        let _ = write!(s, " {}", tcp_state_name(st));
    }
    if f.status & IPS_SEEN_REPLY == 0 {
        // One-way flows are never offloaded: say so where people look.
        s.push_str(" UNREPLIED");
    }
    if f.zone != 0 {
        let _ = write!(s, " zone {}", f.zone);
    }
    if f.mark != 0 {
        let _ = write!(s, " mark {:#x}", f.mark);
    }
    if let Some(ms) = f.on_path_ms {
        let _ = write!(
            s,
            " on {} for {}",
            path_name(f.path),
            duration_ms(ms as f64)
        );
    }
    if let Some(ms) = f.to_offload_ms {
        let _ = write!(s, " (offloaded {} after first packet)", duration_ms(ms));
    }
    if let Some(c) = f.counters {
        let _ = write!(
            s,
            " {} {} pkts",
            bytes(c.orig_bytes + c.reply_bytes),
            c.orig_packets + c.reply_packets
        );
    }
    if let Some(w) = &f.why {
        let _ = write!(s, "; not offloaded: {}", w.text());
    }
    s
}

/// `HH:MM:SS.mmm` UTC.
pub fn clock(unix_ms: u64) -> String {
    let day_ms = unix_ms % 86_400_000;
    format!(
        "{:02}:{:02}:{:02}.{:03}Z",
        day_ms / 3_600_000,
        day_ms / 60_000 % 60,
        day_ms / 1000 % 60,
        day_ms % 1000
    )
}

/// One line per transition for `flows --watch`.
pub fn transition_line(t: &Transition) -> String {
    let mut s = format!(
        "{} {:<3} {} {} -> {}",
        clock(t.at_unix_ms),
        proto_name(t.key.proto),
        t.key.orig,
        t.from,
        t.to
    );
    if t.key.zone != 0 {
        let _ = write!(s, " zone {}", t.key.zone);
    }
    if let Some(ms) = t.after_ms {
        let _ = write!(s, " ({} after first packet)", duration_ms(ms));
    }
    s
}

pub fn status_text(st: &Status) -> String {
    let mut o = String::new();
    let ago = |at: u64| duration_ms(st.now_unix_ms.saturating_sub(at) as f64);
    let _ = writeln!(
        o,
        "offloadd {}, pid {}, up {}, config {}",
        st.version,
        st.pid,
        ago(st.started_unix_ms),
        st.config
    );
    let _ = writeln!(o, "mode:       {} ({})", st.role, st.role_why);
    let yes_no = |b: Option<bool>| match b {
        Some(true) => "yes",
        Some(false) => "no",
        None => "not checked",
    };
    let _ = writeln!(
        o,
        "kernel:     flowtables {}, table owner flag {}",
        yes_no(st.kernel_flowtables),
        yes_no(st.owner_flag)
    );
    let _ = writeln!(
        o,
        "hardware:   {} -> {}",
        st.hardware.policy, st.hardware.state
    );
    if let Some(p) = st.priority {
        let _ = writeln!(
            o,
            "priority:   forward chain at {} ({})",
            crate::plan::priority_text(p),
            st.priority_why
        );
    }
    let width = st.devices.iter().map(|d| d.name.len()).max().unwrap_or(0);
    for (i, d) in st.devices.iter().enumerate() {
        let label = if i == 0 { "devices:" } else { "" };
        let mut line = format!("{label:<11} {:<width$}  {}", d.name, d.state.describe());
        if !d.via.is_empty() {
            line.push_str(&format!(" via {}", d.via.join(", ")));
        }
        if let Some(why) = &d.why {
            line.push_str(&format!(": {why}"));
        }
        let _ = writeln!(o, "{line}");
    }
    if st.role == "manage"
        && st.last_apply.is_some()
        && st
            .devices
            .iter()
            .all(|d| d.state == crate::view::status::DeviceState::Missing)
    {
        let here = if st.present_devices.is_empty() {
            "none".into()
        } else {
            st.present_devices.join(", ")
        };
        let what = if st.devices.is_empty() {
            "no devices are configured"
        } else {
            "none of the configured devices exists"
        };
        let _ = writeln!(
            o,
            "NO DEVICES: {what}, so nothing is offloaded; devices here: {here} (set [offload] devices and reload)"
        );
    }
    for d in &st.duplicates {
        let _ = writeln!(o, "DUPLICATE:  {d}");
    }
    for ft in &st.other_flowtables {
        let _ = writeln!(o, "other:      {ft}");
    }
    match &st.conntrack {
        Some(c) => conntrack_text(&mut o, c, st.resync_interval_ms),
        None => {
            let why = st.conntrack_error.as_deref().unwrap_or("not running");
            let _ = writeln!(
                o,
                "flows:      unknown: conntrack watcher unavailable: {why}"
            );
        }
    }
    match &st.last_apply {
        Some(a) => {
            let what = match (&a.error, a.changed) {
                (Some(e), _) => format!("FAILED, previous ruleset kept: {e}"),
                (None, true) => "ruleset changed".into(),
                (None, false) => "kernel already matched".into(),
            };
            let _ = writeln!(
                o,
                "last apply: {} ago, took {}, {what}",
                ago(a.at_unix_ms),
                duration_ms(a.took_ms)
            );
        }
        None => {
            let _ = writeln!(o, "last apply: never (observe mode creates nothing)");
        }
    }
    if let Some(f) = &st.last_flush {
        let asked = match st.flushes_requested {
            0 => String::new(),
            n => format!(", {n} asked for (offloadd flush)"),
        };
        let what = if f.requested {
            "asked for".to_string()
        } else {
            f.tables.join(", ")
        };
        let _ = writeln!(
            o,
            "flushes:    {} after firewall changes{asked}; last {} ago ({what}), took {}",
            st.flushes,
            ago(f.at_unix_ms),
            duration_ms(f.took_ms)
        );
    }
    if st.commits_not_flushed > 0 {
        let why = match st.flush_on.as_str() {
            "off" => "flush_on_firewall_change = \"off\"",
            _ => "set elements only",
        };
        let _ = writeln!(
            o,
            "            {} commits of other tables not flushed for ({why})",
            st.commits_not_flushed
        );
    }
    if let Some(p) = &st.flush_pending {
        let _ = writeln!(o, "flush due:  {p}");
    }
    for (i, w) in st.warnings.iter().enumerate() {
        let label = if i == 0 { "warnings:" } else { "" };
        let _ = writeln!(o, "{label:<11} {w}");
    }
    for (i, e) in st.metrics_errors.iter().enumerate() {
        let label = if i == 0 { "metrics:" } else { "" };
        let _ = writeln!(o, "{label:<11} {e}");
    }
    o
}

fn conntrack_text(o: &mut String, c: &Stats, resync_ms: u64) {
    let _ = writeln!(
        o,
        "flows:      {} slow, {} software, {} hardware",
        c.slow, c.sw, c.hw
    );
    if c.untracked > 0 {
        let _ = writeln!(
            o,
            "            {} of the slow flows are only counted: on the slow path over {} (`flows` lists them from the kernel)",
            c.untracked,
            duration_ms(crate::conntrack::RECENT.as_secs_f64() * 1000.0)
        );
    }
    let t = &c.transitions;
    let _ = writeln!(
        o,
        "moves:      slow->sw {}, slow->hw {}, sw->hw {}, hw->sw {}, back to slow {}",
        t.slow_to_sw, t.slow_to_hw, t.sw_to_hw, t.hw_to_sw, t.to_slow
    );
    match (c.to_offload_p50_ms, c.to_offload_p95_ms) {
        (Some(p50), Some(p95)) => {
            let n = c
                .to_offload_samples
                .min(crate::conntrack::TTO_SAMPLES as u64);
            let _ = writeln!(
                o,
                "to offload: p50 {}, p95 {} (last {n} offloaded flows)",
                duration_ms(p50),
                duration_ms(p95)
            );
        }
        _ => {
            let _ = writeln!(o, "to offload: no flow offloaded since start");
        }
    }
    let every = if c.resync_interval_ms > 0 {
        c.resync_interval_ms
    } else {
        resync_ms
    };
    let _ = writeln!(
        o,
        "conntrack:  {} events, resyncs every {}: {} lookup rounds, {} dumps ({} full), {} overruns{}",
        c.events,
        duration_ms(every as f64),
        c.lookups,
        c.dumps,
        c.full_dumps,
        c.overruns,
        if c.overruns > 0 {
            " (events lost, resynced; raise [conntrack] event_buffer)"
        } else {
            ""
        }
    );
    let cost = |v: Option<f64>| v.map_or("not yet".to_string(), duration_ms);
    if let Some(took) = c.last_lookup_ms {
        let _ = writeln!(
            o,
            "            last lookups: {} offloaded or recent flows in {} (one kernel hash lookup each); a flow offloaded over 10 s is looked up every {}{}",
            c.last_lookup_flows,
            duration_ms(took),
            duration_ms(c.recheck_every_ms.max(every) as f64),
            if c.recheck_every_ms > every { " (spread: all at every resync would cost over 0.5 % of a core)" } else { "" }
        );
    }
    let _ = writeln!(
        o,
        "            last offloaded-only dump {}, last full dump {} (each walks the table: spaced by its cost)",
        cost(c.last_filtered_dump_ms),
        cost(c.last_full_dump_ms)
    );
    if c.approximate {
        let _ = writeln!(
            o,
            "            counts are approximate: events were lost, and the next full dump settles them"
        );
    }
    if c.status_filter == Some(false) {
        let _ = writeln!(
            o,
            "            the kernel ignores the conntrack status filter (Linux < 5.15): every resync dumps the whole table, so it runs every {} instead of {}",
            duration_ms(every as f64),
            duration_ms(resync_ms as f64)
        );
    }
}

#[cfg(test)]
#[path = "tests.rs"]
mod tests;
