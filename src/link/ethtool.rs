//! The `hw-tc-offload` feature of a device (what `ethtool -k DEV` shows), read with the
//! SIOCETHTOOL ioctl: a hint for why hardware offload was refused and what to try.
//!
//! Feature names are not fixed numbers: the kernel lists them as the ETH_SS_FEATURES
//! string set, and ETHTOOL_GFEATURES returns bit blocks in that order.

use std::ffi::c_void;

const SIOCETHTOOL: libc::c_ulong = 0x8946;
const ETHTOOL_GSTRINGS: u32 = 0x1b;
const ETHTOOL_GSSET_INFO: u32 = 0x37;
const ETHTOOL_GFEATURES: u32 = 0x3a;
const ETH_SS_FEATURES: u32 = 4;
const ETH_GSTRING_LEN: usize = 32;

/// The state of one feature.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Feature {
    pub active: bool,
    /// The driver lets the user change it (`[fixed]` when false).
    pub changeable: bool,
}

/// A sentence for a hardware refusal on `dev`, or `None` if the feature cannot be read.
pub fn hw_tc_offload_hint(dev: &str) -> Option<String> {
    let f = feature(dev, "hw-tc-offload")?;
    Some(match f {
        Feature { active: true, .. } => {
            "ethtool: hw-tc-offload is on, but the driver has no flowtable offload".into()
        }
        Feature {
            changeable: true, ..
        } => format!("ethtool: hw-tc-offload is off; try `ethtool -K {dev} hw-tc-offload on`"),
        Feature {
            changeable: false, ..
        } => "ethtool: hw-tc-offload off [fixed]: the driver has no TC offload".into(),
    })
}

/// Reads feature `name` of `dev`.
pub fn feature(dev: &str, name: &str) -> Option<Feature> {
    let sock = Socket::open()?;
    // How many feature names there are.
    let mut info = SsetInfo {
        cmd: ETHTOOL_GSSET_INFO,
        reserved: 0,
        mask: 1 << ETH_SS_FEATURES,
        data: [0],
    };
    sock.ioctl(dev, (&mut info as *mut SsetInfo).cast())?;
    if info.mask & (1 << ETH_SS_FEATURES) == 0 {
        return None;
    }
    let count = info.data[0] as usize;
    if count == 0 || count > 4096 {
        return None;
    }
    // Their names, ETH_GSTRING_LEN bytes each, after a 12-byte header.
    let mut strings = vec![0u32; 3 + count * ETH_GSTRING_LEN / 4];
    strings[0] = ETHTOOL_GSTRINGS;
    strings[1] = ETH_SS_FEATURES;
    strings[2] = count as u32;
    sock.ioctl(dev, strings.as_mut_ptr().cast())?;
    let bytes: Vec<u8> = strings[3..].iter().flat_map(|w| w.to_ne_bytes()).collect();
    let index = bytes.chunks(ETH_GSTRING_LEN).position(|s| {
        let end = s.iter().position(|&b| b == 0).unwrap_or(s.len());
        &s[..end] == name.as_bytes()
    })?;
    // The bits: blocks of {available, requested, active, never_changed}.
    let blocks = count.div_ceil(32);
    let mut features = vec![0u32; 2 + blocks * 4];
    features[0] = ETHTOOL_GFEATURES;
    features[1] = blocks as u32;
    sock.ioctl(dev, features.as_mut_ptr().cast())?;
    let block = &features[2 + (index / 32) * 4..][..4];
    let bit = 1u32 << (index % 32);
    Some(Feature {
        active: block[2] & bit != 0,
        changeable: block[0] & bit != 0,
    })
}

/// struct ethtool_sset_info with room for one length (we ask for one set).
#[repr(C)]
struct SsetInfo {
    cmd: u32,
    reserved: u32,
    mask: u64,
    data: [u32; 1],
}

struct Socket(libc::c_int);

impl Socket {
    fn open() -> Option<Socket> {
        // SAFETY: plain socket(2); the descriptor is closed in Drop. Any socket carries
        // SIOCETHTOOL; AF_UNIX keeps the systemd unit at AF_NETLINK AF_UNIX.
        let fd = unsafe { libc::socket(libc::AF_UNIX, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
        (fd >= 0).then_some(Socket(fd))
    }

    fn ioctl(&self, dev: &str, data: *mut c_void) -> Option<()> {
        if dev.is_empty() || dev.len() >= libc::IFNAMSIZ {
            return None;
        }
        // SAFETY: ifreq is plain data; the name is NUL-terminated (zeroed, shorter than
        // IFNAMSIZ) and `data` points to a buffer sized for the command it holds.
        unsafe {
            let mut ifr: libc::ifreq = std::mem::zeroed();
            for (d, s) in ifr.ifr_name.iter_mut().zip(dev.bytes()) {
                *d = s as libc::c_char;
            }
            ifr.ifr_ifru.ifru_data = data.cast();
            (libc::ioctl(self.0, SIOCETHTOOL as _, &mut ifr) == 0).then_some(())
        }
    }
}

impl Drop for Socket {
    fn drop(&mut self) {
        // SAFETY: we own the descriptor.
        unsafe { libc::close(self.0) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_has_hw_tc_offload_fixed_off() {
        // `ethtool -k lo` shows "hw-tc-offload: off [fixed]" on every kernel we run.
        let f = feature("lo", "hw-tc-offload").expect("lo lists its features");
        assert_eq!(
            f,
            Feature {
                active: false,
                changeable: false
            }
        );
        let hint = hw_tc_offload_hint("lo").unwrap();
        assert!(hint.contains("[fixed]"), "{hint}");
        assert!(feature("lo", "no-such-feature").is_none());
        assert!(feature("nosuchdev0", "hw-tc-offload").is_none());
    }

    #[test]
    fn loopback_rx_checksumming_is_on() {
        // A feature that is on for lo, to show the bit lookup is not always false.
        let f = feature("lo", "rx-checksum").or_else(|| feature("lo", "tx-checksum-ip-generic"));
        assert!(f.is_some_and(|f| f.active), "{f:?}");
    }
}
