//! A finished nf_tables batch: its bytes, what each message is (to name the object a
//! refusal concerns), and the forms it is sent in (committed at a generation, or as a
//! trial that the kernel validates and aborts).

use std::collections::BTreeMap;

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
    /// A set of interface names (split layout) and its elements.
    DeviceSet,
    FlowAdd,
}

/// A finished batch: the bytes to send and what each sequence number is.
pub struct BuiltBatch {
    pub bytes: Vec<u8>,
    pub labels: BTreeMap<u32, Object>,
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
    pub(super) fn from_batch(batch: Batch, labels_in_order: Vec<Object>) -> Self {
        let finalized = batch.finalize();
        let bytes: Vec<u8> = finalized.iter().flat_map(|b| b.iter().copied()).collect();
        let mut labels = BTreeMap::new();
        let mut data = labels_in_order.into_iter();
        for (kind, seq, _) in messages(&bytes) {
            let label = if kind == NFNL_MSG_BATCH_BEGIN || kind == NFNL_MSG_BATCH_END {
                Object::Batch
            } else {
                data.next().expect("one label per message")
            };
            labels.insert(seq, label);
        }
        BuiltBatch { bytes, labels }
    }

    /// The batch, to be committed only if the ruleset generation is still `generation`
    /// (the one the batch was decided on).
    pub fn bytes_at(&self, generation: u32) -> Vec<u8> {
        let Some((NFNL_MSG_BATCH_BEGIN, _, begin)) = messages(&self.bytes).first().cloned() else {
            return self.bytes.clone();
        };
        let len = (begin.end - begin.start + 8) as u32;
        let mut out = Vec::with_capacity(self.bytes.len() + 8);
        out.extend_from_slice(&len.to_ne_bytes());
        out.extend_from_slice(&self.bytes[begin.start + 4..begin.end]);
        out.extend_from_slice(&8u16.to_ne_bytes());
        out.extend_from_slice(&NFNL_BATCH_GENID.to_ne_bytes());
        out.extend_from_slice(&generation.to_be_bytes());
        // BATCH_BEGIN is 20 bytes (nlmsghdr + nfgenmsg), so the next message starts at
        // begin.end, already aligned.
        out.extend_from_slice(&self.bytes[begin.end..]);
        out
    }

    /// The same messages without NFNL_MSG_BATCH_END: the kernel validates every message
    /// (driver setup for `flags offload` included) and then aborts, changing nothing
    /// (nfnetlink_rcv_batch: no BATCH_END -> abort). This is what `nft -c` sends.
    pub fn trial_bytes(&self) -> Vec<u8> {
        let mut end = self.bytes.len();
        if let Some((kind, _, range)) = messages(&self.bytes).pop() {
            if kind == NFNL_MSG_BATCH_END {
                end = range.start;
            }
        }
        self.bytes[..end].to_vec()
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
