//! The daemon's keeper of the last path changes (`offloadd why`, `{"request":"history"}`):
//! a task fed by the conntrack watcher's transitions.

use std::sync::{Arc, Mutex};

use crate::conntrack::Transition;
use crate::control::WatchLine;
use crate::view::history::History;

/// Keeps `ring` filled from the watcher's transitions until the watcher stops.
pub async fn keep(mut rx: tokio::sync::broadcast::Receiver<Transition>, ring: Arc<Mutex<History>>) {
    while let Some(line) = WatchLine::next(&mut rx).await {
        let mut h = ring.lock().unwrap();
        match line {
            WatchLine::Transition(t) => h.push(t),
            WatchLine::Lagged(n) => h.missed += n,
            WatchLine::Error(_) => {}
        }
    }
}
