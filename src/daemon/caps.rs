//! What the running daemon keeps of root's power: `CAP_NET_ADMIN` (nf_tables,
//! ctnetlink, rtnetlink, a forced receive buffer) and `CAP_NET_BIND_SERVICE` (a
//! `[metrics] listen` port below 1024 after a reload). Everything else is dropped once
//! the daemon has started, from the bounding set too, with `no_new_privs`, so neither a
//! bug in offloadd nor anything it might execute can use the rest.
//!
//! What stays possible without the rest: writing `/proc/sys/net/netfilter/*` (files
//! owned by uid 0, which the daemon still is), the control socket under `/run`, and a
//! metrics textfile in a directory root may write by its mode (no `CAP_DAC_OVERRIDE`).
//! capabilities(7), prctl(2) PR_CAPBSET_DROP / PR_SET_NO_NEW_PRIVS / PR_CAP_AMBIENT.

use std::io;

pub const CAP_NET_BIND_SERVICE: u32 = 10;
pub const CAP_NET_ADMIN: u32 = 12;
/// Kept: see the module comment.
pub const KEEP: [u32; 2] = [CAP_NET_ADMIN, CAP_NET_BIND_SERVICE];

/// `_LINUX_CAPABILITY_VERSION_3`: two 32-bit words per set.
const VERSION_3: u32 = 0x2008_0522;

#[repr(C)]
struct Header {
    version: u32,
    pid: i32,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct Data {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

/// The mask of `caps` as capset's two words.
fn words(caps: &[u32]) -> [u32; 2] {
    let mut w = [0u32; 2];
    for &c in caps {
        w[(c / 32) as usize] |= 1 << (c % 32);
    }
    w
}

/// The effective set of this thread, as a 64-bit mask.
pub fn effective() -> io::Result<u64> {
    let mut hdr = Header {
        version: VERSION_3,
        pid: 0,
    };
    let mut data = [Data::default(); 2];
    // SAFETY: capget writes two Data structs for version 3; both pointers are valid.
    let rc = unsafe { libc::syscall(libc::SYS_capget, &mut hdr, data.as_mut_ptr()) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(u64::from(data[0].effective) | (u64::from(data[1].effective) << 32))
}

/// What `drop_to` did, for the log.
#[derive(Debug, PartialEq, Eq)]
pub struct Dropped {
    /// The bounding set was cut too (needs CAP_SETPCAP, which root has).
    pub bounding: bool,
}

/// Sets `no_new_privs`, cuts the bounding and ambient sets, and leaves `keep` (where the
/// thread had them) as the only permitted and effective capabilities.
///
/// Capabilities, the bounding set and `no_new_privs` belong to a thread and are
/// inherited by the threads it creates: called before the runtime and the nft and
/// conntrack threads exist, so every thread of the daemon has only `keep`.
pub fn drop_to(keep: &[u32]) -> io::Result<Dropped> {
    // SAFETY: prctl with integer arguments only.
    if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let mut bounding = true;
    for cap in 0..64u32 {
        if keep.contains(&cap) {
            continue;
        }
        // SAFETY: as above.
        if unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap, 0, 0, 0) } != 0 {
            match io::Error::last_os_error().raw_os_error() {
                // Past the kernel's last capability.
                Some(libc::EINVAL) => break,
                // No CAP_SETPCAP (started with fewer capabilities): the sets below
                // still shrink.
                Some(libc::EPERM) => {
                    bounding = false;
                    break;
                }
                _ => return Err(io::Error::last_os_error()),
            }
        }
    }
    // SAFETY: as above. Fails only on kernels before 4.3, which have no ambient set.
    unsafe {
        libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL,
            0,
            0,
            0,
        )
    };
    let have = effective()?;
    let kept: Vec<u32> = keep
        .iter()
        .copied()
        .filter(|&c| have & (1 << c) != 0)
        .collect();
    let w = words(&kept);
    let data = [
        Data {
            effective: w[0],
            permitted: w[0],
            inheritable: 0,
        },
        Data {
            effective: w[1],
            permitted: w[1],
            inheritable: 0,
        },
    ];
    let mut hdr = Header {
        version: VERSION_3,
        pid: 0,
    };
    // SAFETY: capset reads two Data structs for version 3; both pointers are valid.
    if unsafe { libc::syscall(libc::SYS_capset, &mut hdr, data.as_ptr()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(Dropped { bounding })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_put_each_capability_in_its_word() {
        assert_eq!(words(&KEEP), [(1 << 12) | (1 << 10), 0]);
        assert_eq!(words(&[40]), [0, 1 << 8]);
    }

    /// In a thread of its own, so the test process keeps its capabilities.
    #[test]
    fn a_dropped_thread_keeps_only_what_it_asked_for() {
        std::thread::spawn(|| {
            let before = effective().unwrap();
            drop_to(&[CAP_NET_ADMIN]).unwrap();
            let after = effective().unwrap();
            assert_eq!(
                after,
                before & (1 << CAP_NET_ADMIN),
                "{before:x} -> {after:x}"
            );
            // SAFETY: reads a flag.
            assert_eq!(
                unsafe { libc::prctl(libc::PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0) },
                1
            );
        })
        .join()
        .unwrap();
    }
}
