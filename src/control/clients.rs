//! How many control clients are served at once, and who makes room.
//!
//! The socket is root's only (mode 0600), but root's own pollers (rpcd, LuCI, scripts,
//! a stuck `watch`) can still open connections faster than they finish. Each costs a
//! descriptor and a task; past `MAX_CLIENTS` the oldest connection that has not sent
//! its request yet is closed to make room, so a flood of idle connections never keeps
//! `status` from being answered. When every slot streams (`watch`, `flows`), a new
//! client is told the daemon is busy.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

/// Connections served at once (idle ones are closed, oldest first, past this).
pub const MAX_CLIENTS: usize = 64;

#[derive(Default)]
struct State {
    active: usize,
    /// Connections still waiting for their request line, oldest first, with the sender
    /// that tells one to close.
    idle: VecDeque<(u64, oneshot::Sender<()>)>,
    next: u64,
}

#[derive(Clone, Default)]
pub struct Clients(Arc<Mutex<State>>);

/// One admitted connection; dropping it frees the slot.
pub struct Ticket {
    id: u64,
    clients: Clients,
    /// Fires when a newer connection needs the slot while this one is still idle.
    pub evicted: oneshot::Receiver<()>,
}

impl Clients {
    /// A slot for a new connection, closing the oldest idle one if all are taken;
    /// `None` when every slot is serving a request.
    pub fn admit(&self, max: usize) -> Option<Ticket> {
        let mut st = self.0.lock().unwrap();
        if st.active >= max {
            let (_, evict) = st.idle.pop_front()?;
            let _ = evict.send(());
        }
        st.active += 1;
        st.next += 1;
        let id = st.next;
        let (tx, evicted) = oneshot::channel();
        st.idle.push_back((id, tx));
        Some(Ticket {
            id,
            clients: self.clone(),
            evicted,
        })
    }

    #[cfg(test)]
    pub fn active(&self) -> usize {
        self.0.lock().unwrap().active
    }
}

impl Ticket {
    /// The request arrived: this connection is no longer a candidate for closing.
    pub fn serving(&self) {
        self.clients
            .0
            .lock()
            .unwrap()
            .idle
            .retain(|(i, _)| *i != self.id);
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let mut st = self.clients.0.lock().unwrap();
        st.active -= 1;
        st.idle.retain(|(i, _)| *i != self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_oldest_idle_connection_makes_room_and_serving_ones_stay() {
        let c = Clients::default();
        let serving = c.admit(3).unwrap();
        serving.serving();
        let mut first_idle = c.admit(3).unwrap();
        let mut second_idle = c.admit(3).unwrap();
        assert_eq!(c.active(), 3);
        let newest = c.admit(3).expect("room made by closing an idle one");
        assert!(
            first_idle.evicted.try_recv().is_ok(),
            "the oldest idle one is told to close"
        );
        assert!(
            second_idle.evicted.try_recv().is_err(),
            "only one is closed"
        );
        // Its task ends on that signal and gives the slot back.
        drop(first_idle);
        assert_eq!(c.active(), 3);
        newest.serving();
        let _next = c.admit(3).unwrap();
        assert!(second_idle.evicted.try_recv().is_ok());
        drop(second_idle);
        _next.serving();
        assert!(c.admit(3).is_none(), "every slot serves a request");
        drop(serving);
        assert!(c.admit(3).is_some());
    }
}
