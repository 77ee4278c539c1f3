//! A finished nf_tables batch: its bytes, what each message is (to name the object a
//! refusal concerns), and the forms it is sent in (committed at a generation, or as a
//! trial that the kernel validates and aborts).

use nftnl::Batch;

use super::socket::messages;
use super::sys;

/// What a message in a batch creates or deletes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Object {
    /// NFNL_MSG_BATCH_BEGIN/END: errors here concern the whole batch (permissions).
    Batch,
    DeleteTable,
    Table,
    /// The flowtable, with the devices and flags of that message.
    Flowtable {
        name: String,
        devices: Vec<String>,
        hw_offload: bool,
    },
    Chain,
    /// An exclusion rule, with its config line.
    Exclude {
        line: usize,
        text: String,
    },
    /// The `{ tcp, udp }` set and its elements.
    ProtoSet,
    /// A set of interface names (the `flow add` match) and its elements.
    DeviceSet,
    FlowAdd,
}

/// A finished batch: the bytes libnftnl built, and what each message is, in order.
pub struct BuiltBatch {
    pub bytes: Vec<u8>,
    /// One per message, BATCH_BEGIN and BATCH_END included (as `Object::Batch`).
    pub objects: Vec<Object>,
}

/// How a batch goes to the kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// Validated and aborted: no NFNL_MSG_BATCH_END, nothing committed (what `nft -c`
    /// sends; nfnetlink_rcv_batch aborts a batch that lacks its end).
    Trial,
    /// Committed only if the ruleset generation is still this one (the reading the
    /// batch was decided on); otherwise refused whole with ERESTART.
    At(u32),
}

/// nfnetlink batch delimiters (uapi nfnetlink.h).
pub(super) const NFNL_MSG_BATCH_BEGIN: u16 = 0x10;
pub(super) const NFNL_MSG_BATCH_END: u16 = 0x11;
/// NFNL_BATCH_GENID, an attribute of BATCH_BEGIN (u32, network order). nfnetlink_rcv_batch
/// refuses the whole batch with ERESTART, acknowledging BATCH_BEGIN's sequence number,
/// unless the ruleset generation still equals it (nf_tables_valid_genid, checked under
/// the commit mutex, so nothing can commit between the check and our commit).
pub(super) const NFNL_BATCH_GENID: u16 = 1;

impl BuiltBatch {
    /// Finishes an nftnl batch; `labels_in_order` says what each message between
    /// BATCH_BEGIN and BATCH_END is.
    pub fn from_batch(batch: Batch, labels_in_order: Vec<Object>) -> Self {
        let finalized = batch.finalize();
        let bytes: Vec<u8> = finalized.iter().flat_map(|b| b.iter().copied()).collect();
        let mut data = labels_in_order.into_iter();
        let objects = messages(&bytes)
            .into_iter()
            .map(|(kind, _, _)| {
                if kind == NFNL_MSG_BATCH_BEGIN || kind == NFNL_MSG_BATCH_END {
                    Object::Batch
                } else {
                    data.next().expect("one label per message")
                }
            })
            .collect();
        BuiltBatch { bytes, objects }
    }

    /// How many messages the batch has (sequence numbers it needs).
    pub fn len(&self) -> u32 {
        self.objects.len() as u32
    }

    pub fn is_empty(&self) -> bool {
        self.objects.is_empty()
    }

    /// What the message with sequence number `seq` is, for a batch sent with `wire(base,
    /// ..)`; a number outside the batch concerns the batch as a whole.
    pub fn object(&self, base: u32, seq: u32) -> Object {
        seq.checked_sub(base)
            .and_then(|i| self.objects.get(i as usize))
            .cloned()
            .unwrap_or(Object::Batch)
    }

    /// The bytes to send: message i carries sequence number `base + i`, so only answers
    /// to this sending count; NLM_F_ACK is cleared (refusals are reported anyway, see
    /// `socket`); BATCH_BEGIN carries the generation, or BATCH_END is left out for a
    /// trial.
    pub fn wire(&self, base: u32, how: Delivery) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.bytes.len() + 8);
        for (i, (kind, _, range)) in messages(&self.bytes).into_iter().enumerate() {
            if kind == NFNL_MSG_BATCH_END && how == Delivery::Trial {
                continue;
            }
            let start = out.len();
            out.extend_from_slice(&self.bytes[range]);
            let msg = &mut out[start..];
            msg[8..12].copy_from_slice(&(base + i as u32).to_ne_bytes());
            let flags = u16::from_ne_bytes([msg[6], msg[7]]) & !(libc::NLM_F_ACK as u16);
            msg[6..8].copy_from_slice(&flags.to_ne_bytes());
            if let (NFNL_MSG_BATCH_BEGIN, Delivery::At(generation)) = (kind, how) {
                // BATCH_BEGIN is 20 bytes (nlmsghdr + nfgenmsg), so the attribute lands
                // aligned and the next message starts aligned after it.
                out.extend_from_slice(&8u16.to_ne_bytes());
                out.extend_from_slice(&NFNL_BATCH_GENID.to_ne_bytes());
                out.extend_from_slice(&generation.to_be_bytes());
                let len = (out.len() - start) as u32;
                out[start..start + 4].copy_from_slice(&len.to_ne_bytes());
            }
        }
        out
    }

    /// libnftnl's text of every rule in the batch, in order (for read-back comparison).
    pub fn rule_texts(&self) -> Vec<String> {
        let mut out = Vec::new();
        for (kind, _, range) in messages(&self.bytes) {
            if kind == nfnl_type(libc::NFT_MSG_NEWRULE) {
                // libnftnl reads the header in place: give it u32-aligned storage.
                let msg = &self.bytes[range];
                let mut aligned = vec![0u32; msg.len().div_ceil(4)];
                // SAFETY: `aligned` holds a copy of exactly one complete message.
                unsafe {
                    std::ptr::copy_nonoverlapping(
                        msg.as_ptr(),
                        aligned.as_mut_ptr().cast::<u8>(),
                        msg.len(),
                    );
                    if let Some(r) = sys::parse_rule(aligned.as_ptr().cast()) {
                        out.push(r.exprs);
                    }
                }
            }
        }
        out
    }
}

/// nf_tables message types travel as (NFNL_SUBSYS_NFTABLES << 8) | msg.
pub fn nfnl_type(msg: i32) -> u16 {
    ((libc::NFNL_SUBSYS_NFTABLES as u16) << 8) | msg as u16
}
