//! `offloadd why ADDR[:PORT]`: each flow to or from it, its path now, its last path
//! changes and why it is not offloaded; for a flow gone, what the history still holds.

use std::fmt::Write as _;
use std::path::Path;

use serde::Serialize;

use crate::conntrack::{proto_name, FlowRecord, Transition};
use crate::control::{self, ClientError};
use crate::report::{clock, duration_ms, flow_line, path_name};
use crate::view::history::{History, Target};

#[derive(Debug, Serialize)]
pub struct Answer {
    pub flow: Option<FlowRecord>,
    pub history: Vec<Transition>,
}

/// Asks the daemon; `None` when neither a flow nor a transition matches.
pub fn ask(socket: &Path, target: Target) -> Result<(Vec<Answer>, u64), ClientError> {
    let history = control::get_history(socket)?;
    let mut out = Vec::new();
    control::stream_flows(socket, None, |f| {
        if target.matches(&f) {
            out.push(f);
        }
        true
    })?;
    Ok((answers(target, out, &history), history.missed))
}

/// Each matching flow with its own history, then the history of matching flows gone.
pub fn answers(target: Target, flows: Vec<FlowRecord>, h: &History) -> Vec<Answer> {
    let mut out: Vec<Answer> = flows
        .into_iter()
        .map(|f| Answer {
            history: Target::history_of(&f, h).into_iter().cloned().collect(),
            flow: Some(f),
        })
        .collect();
    let mut gone: Vec<Transition> = h
        .transitions
        .iter()
        .filter(|t| {
            target.matches_tuples(&t.key.orig, &t.reply)
                && !out.iter().any(|a| a.history.contains(t))
        })
        .cloned()
        .collect();
    if !gone.is_empty() {
        gone.sort_by_key(|t| t.at_unix_ms);
        out.push(Answer {
            flow: None,
            history: gone,
        });
    }
    out
}

pub fn text(answers: &[Answer], missed: u64) -> String {
    let mut o = String::new();
    for a in answers {
        match &a.flow {
            Some(f) => {
                let _ = writeln!(
                    o,
                    "{}",
                    flow_line(&FlowRecord {
                        why: None,
                        ..f.clone()
                    })
                );
                let on = f.on_path_ms.map_or(String::new(), |ms| {
                    format!(" for {}", duration_ms(ms as f64))
                });
                let _ = writeln!(o, "  path:       {}{on}", path_name(f.path));
                if let Some(t) = a.history.iter().find(|t| t.after_ms.is_some()) {
                    let after = t.after_ms.unwrap_or(0.0);
                    let first = t.at_unix_ms.saturating_sub(after as u64);
                    let _ = writeln!(
                        o,
                        "  first seen: {} (offloaded {} after its first packet)",
                        clock(first),
                        duration_ms(after)
                    );
                }
                history_lines(&mut o, &a.history);
                match &f.why {
                    Some(w) => {
                        let _ = writeln!(o, "  why slow:   {}", w.text());
                    }
                    None => {
                        let _ = writeln!(o, "  offloaded:  on the {} path", path_name(f.path));
                    }
                }
            }
            None => {
                let _ = writeln!(o, "flows gone from conntrack, as the daemon saw them last:");
                for t in &a.history {
                    let _ = writeln!(
                        o,
                        "  {} {} {} -> {}",
                        clock(t.at_unix_ms),
                        proto_name(t.key.proto),
                        t.key.orig,
                        t.to
                    );
                }
            }
        }
    }
    if missed > 0 {
        let _ = writeln!(
            o,
            "(the daemon's history missed {missed} path changes in bursts it read too slowly)"
        );
    }
    o
}

fn history_lines(o: &mut String, h: &[Transition]) {
    if h.is_empty() {
        let _ = writeln!(
            o,
            "  history:    no path change kept (the daemon keeps the last {})",
            crate::view::history::KEEP
        );
    }
    for (i, t) in h.iter().enumerate() {
        let label = if i == 0 { "history:" } else { "" };
        let _ = writeln!(
            o,
            "  {label:<11} {} {} -> {}",
            clock(t.at_unix_ms),
            t.from,
            t.to
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conntrack::{FlowKey, Path, Tuple, TCP};

    #[test]
    fn a_flow_offloaded_then_back_shows_its_moves_and_reason() {
        let orig = Tuple::of("198.18.1.2", 43210, "198.18.2.2", 5201);
        let reply = Tuple::of("198.18.2.2", 5201, "198.18.1.2", 43210);
        let key = FlowKey {
            proto: TCP,
            zone: 0,
            orig,
        };
        let t = |at, from, to, after_ms| Transition {
            at_unix_ms: at,
            key,
            reply,
            from,
            to,
            after_ms,
        };
        let mut h = History::default();
        h.push(t(3_600_000 + 41, Path::Slow, Path::Sw, Some(41.0)));
        h.push(t(3_612_000, Path::Sw, Path::Slow, None));
        let gone = Tuple::of("198.18.1.2", 43211, "198.18.2.2", 5201);
        h.push(Transition {
            key: FlowKey {
                proto: TCP,
                zone: 0,
                orig: gone,
            },
            reply: gone,
            ..t(3_613_000, Path::Slow, Path::Sw, None)
        });
        let f = FlowRecord {
            proto: TCP,
            zone: 0,
            orig,
            reply,
            mark: 0,
            tcp_state: Some(3),
            status: 0xe,
            path: Path::Slow,
            on_path_ms: Some(2500),
            to_offload_ms: None,
            counters: None,
            why: Some(crate::view::explain::Why {
                reason: crate::view::explain::Reason::Unknown,
                detail: String::new(),
            }),
        };
        let a = answers("198.18.2.2:5201".parse().unwrap(), vec![f], &h);
        let out = text(&a, 0);
        let want = "\
slow tcp 198.18.1.2:43210 -> 198.18.2.2:5201 ESTABLISHED on slow for 2.5 s
  path:       slow for 2.5 s
  first seen: 01:00:00.000Z (offloaded 41 ms after its first packet)
  history:    01:00:00.041Z slow -> sw
              01:00:12.000Z sw -> slow
  why slow:   ";
        assert!(out.starts_with(want), "{out}");
        assert!(out.contains("flows gone from conntrack, as the daemon saw them last:\n  01:00:13.000Z tcp 198.18.1.2:43211 -> 198.18.2.2:5201 -> sw\n"), "{out}");
    }
}
