//! `NftHandle`: the nft thread's async face. The thread owns `Nft` (mnl::Socket is
//! !Send) and the hardware `Memory`, and runs one command at a time.

use std::thread;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};

use super::error::NftError;
use super::hardware::{apply_with_hardware, HardwareOutcome, Memory};
use super::kernel::Nft;
use super::own::OwnCommits;
use super::readback::Actual;
use crate::config::Hardware;
use crate::plan::Desired;

/// A successful apply.
#[derive(Debug, Clone)]
pub struct Applied {
    /// What the kernel now holds (hardware flag as actually applied).
    pub desired: Desired,
    pub hardware: HardwareOutcome,
    /// A batch was committed. False when the kernel already held exactly this and
    /// nothing was sent.
    pub changed: bool,
    /// Our flowtables were deleted and created again (a flush, or a replace of the whole
    /// table), so every flow offloaded in them takes the normal path on its next packet.
    /// False when there was no table to flush (creating it flushes nothing: no flow of
    /// ours was offloaded), and when nothing or only hooks were sent.
    pub flushed: bool,
    /// Devices deleted between the plan and the read-back: the caller plans again.
    pub vanished: Vec<String>,
    /// Wall time of the whole apply, trials and read-back included.
    pub took: Duration,
    /// Devices the kernel refused outright, with its reason (left out).
    pub left_out: Vec<(String, String)>,
    /// Whether the table carries the owner flag.
    pub owner: bool,
    /// Why our chain has the priority it has (filled by the daemon, which chose it).
    pub priority_why: String,
}

/// How to apply a plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApplyRequest {
    pub hardware: Hardware,
    /// Forget hardware verdicts and probe again (start and reload).
    pub reprobe: bool,
    /// Replace the flowtables even if the plan is unchanged (a firewall change).
    pub flush: bool,
}

/// One apply on the nft thread, timed.
fn apply_request(
    nft: &mut Nft,
    memory: &mut Memory,
    desired: &Desired,
    request: ApplyRequest,
) -> Result<Applied, NftError> {
    let start = Instant::now();
    if request.reprobe {
        memory.forget();
    }
    if request.flush {
        nft.request_flush();
    }
    let o = apply_with_hardware(nft, desired, request.hardware, memory)?;
    Ok(Applied {
        desired: o.desired,
        hardware: o.hardware,
        changed: o.changed,
        flushed: o.flushed,
        vanished: o.vanished,
        took: start.elapsed(),
        owner: nft.owner(),
        left_out: o.left_out,
        priority_why: String::new(),
    })
}

enum Command {
    Apply {
        desired: Desired,
        request: ApplyRequest,
        reply: oneshot::Sender<Result<Applied, NftError>>,
    },
    Remove {
        reply: oneshot::Sender<Result<bool, NftError>>,
    },
    Read {
        reply: oneshot::Sender<Result<Actual, NftError>>,
    },
}

/// Async handle to the nft thread. Dropping every handle ends the thread and closes the
/// socket, which makes the kernel delete our owner-flagged table.
#[derive(Clone)]
pub struct NftHandle {
    tx: mpsc::Sender<Command>,
    own: OwnCommits,
}

impl NftHandle {
    /// Starts the nft thread and opens its socket.
    pub fn spawn() -> Result<Self, NftError> {
        let (tx, mut rx) = mpsc::channel::<Command>(16);
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        thread::Builder::new()
            .name("nft".into())
            .spawn(move || {
                let mut nft = match Nft::open() {
                    Ok(n) => {
                        let _ = ready_tx.send(Ok(n.own_commits()));
                        n
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                let mut memory = Memory::default();
                while let Some(cmd) = rx.blocking_recv() {
                    match cmd {
                        Command::Apply {
                            desired,
                            request,
                            reply,
                        } => {
                            let _ =
                                reply.send(apply_request(&mut nft, &mut memory, &desired, request));
                        }
                        Command::Remove { reply } => {
                            memory.forget();
                            let _ = reply.send(nft.remove());
                        }
                        Command::Read { reply } => {
                            let _ = reply.send(nft.read());
                        }
                    }
                }
            })
            .map_err(|error| NftError::Io {
                context: "starting the nft thread",
                error,
            })?;
        let own = ready_rx.recv().unwrap_or_else(|_| {
            Err(NftError::Io {
                context: "starting the nft thread",
                error: std::io::Error::other("thread ended"),
            })
        })?;
        Ok(NftHandle { tx, own })
    }

    /// The generations this daemon's batches committed as (for the ruleset monitor).
    pub fn own_commits(&self) -> OwnCommits {
        self.own.clone()
    }

    async fn call<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<Result<T, NftError>>) -> Command,
    ) -> Result<T, NftError> {
        let (reply, rx) = oneshot::channel();
        let gone = || NftError::Io {
            context: "the nft thread",
            error: std::io::Error::other("stopped"),
        };
        self.tx.send(make(reply)).await.map_err(|_| gone())?;
        rx.await.map_err(|_| gone())?
    }

    pub async fn apply(
        &self,
        desired: Desired,
        request: ApplyRequest,
    ) -> Result<Applied, NftError> {
        self.call(|reply| Command::Apply {
            desired,
            request,
            reply,
        })
        .await
    }

    pub async fn remove(&self) -> Result<bool, NftError> {
        self.call(|reply| Command::Remove { reply }).await
    }

    pub async fn read(&self) -> Result<Actual, NftError> {
        self.call(|reply| Command::Read { reply }).await
    }
}
