//! nf_tables: the only module that talks to the kernel's packet filter.
//!
//! `Nft` owns the netlink socket and applies `Desired` values in single batches;
//! `NftHandle` is the async face of it (an actor on its own thread, since mnl::Socket is
//! !Send). The socket lives as long as the daemon: our table carries the owner flag, so
//! the kernel deletes it when this socket closes, including on a crash or `kill -9`.

pub mod batch;
mod built;
mod error;
pub mod features;
#[cfg(test)]
mod fixtures;
mod handle;
mod hardware;
mod kernel;
pub mod monitor;
pub mod own;
mod readback;
pub mod socket;
mod step;
pub mod sys;

pub use error::{errno_name, explain, NftError, NO_FLOWTABLE_SUPPORT};
pub use features::Features;
pub use handle::{Applied, ApplyRequest, NftHandle};
pub use hardware::{apply_with_hardware, Change, HardwareOutcome, Kernel, Memory, Outcome};
pub use kernel::Nft;
pub use readback::Actual;

/// nft's name for a netfilter family number (`inet`, `ip`, ...).
pub fn family_name(f: u32) -> &'static str {
    match f as i32 {
        libc::NFPROTO_INET => "inet",
        libc::NFPROTO_IPV4 => "ip",
        libc::NFPROTO_IPV6 => "ip6",
        libc::NFPROTO_BRIDGE => "bridge",
        libc::NFPROTO_NETDEV => "netdev",
        libc::NFPROTO_ARP => "arp",
        _ => "?",
    }
}
