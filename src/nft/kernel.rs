//! `Nft`: applies `Desired` values to the kernel, one batch per change, and checks the
//! result by reading it back. `NftHandle`: the same, from async code.

use std::thread;
use std::time::{Duration, Instant};

use nftnl_sys::libc;
use serde::Serialize;
use tokio::sync::{mpsc, oneshot};

use super::batch::{self, BuiltBatch, Object, TableFlags};
use super::error::{explain, NftError};
use super::readback::Actual;
use super::socket::NftSocket;
use crate::config::Hardware;
use crate::plan::Desired;

/// Result of the hardware question for one apply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum HardwareOutcome {
    /// `hardware = "off"`: never tried.
    Off,
    /// The flowtable has `flags offload`.
    Active,
    /// `hardware = "auto"` and some device refused: software flowtable; (device, why).
    Fallback { refused: Vec<(String, String)> },
}

impl std::fmt::Display for HardwareOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HardwareOutcome::Off => f.write_str("software (hardware = \"off\")"),
            HardwareOutcome::Active => f.write_str("hardware"),
            HardwareOutcome::Fallback { refused } => {
                let devs: Vec<&str> = refused.iter().map(|(d, _)| d.as_str()).collect();
                write!(f, "software (hardware refused by {})", devs.join(", "))
            }
        }
    }
}

/// A successful apply.
#[derive(Debug, Clone)]
pub struct Applied {
    /// What the kernel now holds (hardware flag as actually applied).
    pub desired: Desired,
    pub hardware: HardwareOutcome,
    /// False when the kernel already held exactly this and nothing was sent.
    pub changed: bool,
    /// Wall time of the whole apply, trials and read-back included.
    pub took: Duration,
    /// Whether the table carries the owner flag.
    pub owner: bool,
}

/// The kernel operations the hardware decision needs (a fake implements it in tests).
pub trait Kernel {
    /// Makes the kernel hold `d`; Ok(false) when it already did.
    fn apply(&mut self, d: &Desired) -> Result<bool, NftError>;
    /// Validates `d` without committing it.
    fn trial(&mut self, d: &Desired) -> Result<(), NftError>;
    /// Validates a hardware flowtable on `device` alone without committing it.
    fn probe_hw(&mut self, device: &str) -> Result<(), NftError>;
}

/// Applies `desired` under the hardware policy. `desired.flowtable.hw_offload` is what
/// the plan asked for; with `Auto` a refusal falls back to software and names each
/// device that refused, found by probing devices one at a time.
pub fn apply_with_hardware<K: Kernel>(
    k: &mut K,
    desired: &Desired,
    hw: Hardware,
) -> Result<(bool, Desired, HardwareOutcome), NftError> {
    let wants_hw = desired.flowtable.as_ref().is_some_and(|f| f.hw_offload);
    if hw == Hardware::Off || !wants_hw {
        let d = desired.software_only();
        return Ok((k.apply(&d)?, d, HardwareOutcome::Off));
    }
    match k.trial(desired) {
        Ok(()) => Ok((k.apply(desired)?, desired.clone(), HardwareOutcome::Active)),
        Err(NftError::HardwareRefused { devices, .. }) => {
            let mut refused = Vec::new();
            for dev in &devices {
                match k.probe_hw(dev) {
                    Ok(()) => {}
                    Err(NftError::HardwareRefused { reason, .. }) => {
                        refused.push((dev.clone(), short_reason(&reason)))
                    }
                    Err(e) => refused.push((dev.clone(), e.to_string())),
                }
            }
            if refused.is_empty() {
                // Each device alone is fine but not together: report the set.
                refused = devices
                    .iter()
                    .map(|d| {
                        (
                            d.clone(),
                            "refused in combination with the other devices".to_string(),
                        )
                    })
                    .collect();
            }
            if hw == Hardware::Require {
                let names = refused.iter().map(|(d, _)| d.clone()).collect();
                let why = refused
                    .iter()
                    .map(|(d, r)| format!("{d}: {r}"))
                    .collect::<Vec<_>>()
                    .join("; ");
                return Err(NftError::HardwareRefused { devices: names, reason: format!("{why}; hardware = \"require\" refuses to start (use \"auto\" to fall back to software offload)") });
            }
            let d = desired.software_only();
            Ok((k.apply(&d)?, d, HardwareOutcome::Fallback { refused }))
        }
        Err(e) => Err(e),
    }
}

fn short_reason(reason: &str) -> String {
    reason
        .split(';')
        .next()
        .unwrap_or(reason)
        .trim()
        .to_string()
}

/// Owns the netlink socket and what was last applied through it.
pub struct Nft {
    sock: NftSocket,
    /// Use NFT_TABLE_F_OWNER; cleared once if the kernel refuses it (Linux < 5.12).
    owner: bool,
    /// Last ruleset applied, and the rule expressions it was built with.
    applied: Option<(Desired, Vec<String>)>,
}

impl Nft {
    pub fn open() -> Result<Self, NftError> {
        let sock = NftSocket::open().map_err(|error| NftError::Io {
            context: "opening the netfilter netlink socket",
            error,
        })?;
        Ok(Nft {
            sock,
            owner: true,
            applied: None,
        })
    }

    pub fn owner(&self) -> bool {
        self.owner
    }

    pub fn read(&mut self) -> Result<Actual, NftError> {
        Actual::read(&mut self.sock).map_err(|error| NftError::Io {
            context: "reading nf_tables state",
            error,
        })
    }

    fn table_exists(&mut self) -> Result<bool, NftError> {
        Ok(self.read()?.table.is_some())
    }

    /// Sends a batch (or its trial) and returns the first refusal in batch order.
    fn send(&mut self, b: &BuiltBatch, trial: bool) -> Result<Option<(Object, i32)>, NftError> {
        let bytes = if trial {
            b.trial_bytes()
        } else {
            b.bytes.clone()
        };
        let mut answers = self.sock.send_batch(&bytes).map_err(|error| NftError::Io {
            context: "sending an nf_tables batch",
            error,
        })?;
        answers.retain(|&(_, errno)| errno != 0);
        answers.sort();
        Ok(answers
            .first()
            .map(|&(seq, errno)| (b.labels.get(&seq).cloned().unwrap_or(Object::Batch), errno)))
    }

    /// Turns a refusal into an error; settles the ENOENT ambiguity on NEWFLOWTABLE.
    fn classify(&mut self, object: Object, errno: i32) -> NftError {
        if let (Object::Flowtable { devices, .. }, libc::ENOENT) = (&object, errno) {
            // Without nf_flow_table the type lookup fails with ENOENT; a vanished device
            // does too. A flowtable with no devices separates the two.
            let probe = batch::probe(&[], false, TableFlags { owner: self.owner });
            return match self.send(&probe, true) {
                Ok(Some((Object::Flowtable { .. }, libc::ENOENT))) => NftError::NoFlowtableSupport,
                Ok(_) => NftError::DeviceGone {
                    devices: devices.clone(),
                },
                Err(e) => e,
            };
        }
        explain(&object, errno)
    }

    /// Removes our table if it is there. Returns whether it was.
    pub fn remove(&mut self) -> Result<bool, NftError> {
        self.applied = None;
        if !self.table_exists()? {
            return Ok(false);
        }
        match self.send(&batch::delete(), false)? {
            None | Some((_, libc::ENOENT)) => Ok(true),
            Some((o, e)) => Err(self.classify(o, e)),
        }
    }
}

impl Kernel for Nft {
    fn apply(&mut self, desired: &Desired) -> Result<bool, NftError> {
        if let Some((d, rules)) = &self.applied {
            if d == desired {
                let rules = rules.clone();
                // Still there as we left it? Then there is nothing to send.
                if self.read()?.verify(desired, &rules, self.owner).is_ok() {
                    return Ok(false);
                }
            }
        }
        loop {
            let replace = self.table_exists()?;
            let b = batch::create(desired, TableFlags { owner: self.owner }, replace);
            match self.send(&b, false)? {
                None => {
                    let rules = b.rule_texts();
                    self.read()?
                        .verify(desired, &rules, self.owner)
                        .map_err(NftError::ReadBack)?;
                    self.applied = Some((desired.clone(), rules));
                    return Ok(true);
                }
                Some((Object::Table, libc::EOPNOTSUPP)) if self.owner => {
                    tracing::warn!("kernel refused the table owner flag (Linux < 5.12): if offloadd is killed, remove the table with `nft delete table inet offloadd`");
                    self.owner = false;
                }
                Some((o, e)) => return Err(self.classify(o, e)),
            }
        }
    }

    fn trial(&mut self, desired: &Desired) -> Result<(), NftError> {
        let replace = self.table_exists()?;
        let b = batch::create(desired, TableFlags { owner: self.owner }, replace);
        match self.send(&b, true)? {
            None => Ok(()),
            Some((o, e)) => Err(self.classify(o, e)),
        }
    }

    fn probe_hw(&mut self, device: &str) -> Result<(), NftError> {
        let b = batch::probe(&[device], true, TableFlags { owner: self.owner });
        match self.send(&b, true)? {
            None => Ok(()),
            Some((o, e)) => Err(self.classify(o, e)),
        }
    }
}

enum Command {
    Apply {
        desired: Desired,
        hardware: Hardware,
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
                        let _ = ready_tx.send(Ok(()));
                        n
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                while let Some(cmd) = rx.blocking_recv() {
                    match cmd {
                        Command::Apply {
                            desired,
                            hardware,
                            reply,
                        } => {
                            let start = Instant::now();
                            let r = apply_with_hardware(&mut nft, &desired, hardware).map(
                                |(changed, desired, hardware)| Applied {
                                    desired,
                                    hardware,
                                    changed,
                                    took: start.elapsed(),
                                    owner: nft.owner(),
                                },
                            );
                            let _ = reply.send(r);
                        }
                        Command::Remove { reply } => {
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
        ready_rx.recv().unwrap_or_else(|_| {
            Err(NftError::Io {
                context: "starting the nft thread",
                error: std::io::Error::other("thread ended"),
            })
        })?;
        Ok(NftHandle { tx })
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

    pub async fn apply(&self, desired: Desired, hardware: Hardware) -> Result<Applied, NftError> {
        self.call(|reply| Command::Apply {
            desired,
            hardware,
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

#[cfg(test)]
#[path = "kernel_tests.rs"]
mod tests;
