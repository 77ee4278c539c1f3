//! Which network devices exist, as a value the planner can use.
//!
//! The snapshot is read with `if_nameindex(3)`, which lists the interfaces of the calling
//! thread's network namespace and needs no privileges, so `offloadd plan` works as any
//! user.

use std::collections::BTreeMap;
use std::ffi::CStr;
use std::io;

/// Present devices by name, with their interface index.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LinkSnapshot {
    /// name -> ifindex
    links: BTreeMap<String, u32>,
}

impl LinkSnapshot {
    /// Builds a snapshot from names (tests, fixtures).
    pub fn from_names<I, S>(names: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        LinkSnapshot {
            links: names
                .into_iter()
                .enumerate()
                .map(|(i, n)| (n.into(), i as u32 + 1))
                .collect(),
        }
    }

    /// Reads the devices of the current network namespace.
    pub fn current() -> io::Result<Self> {
        let mut links = BTreeMap::new();
        // SAFETY: if_nameindex returns a heap array terminated by an entry with index 0
        // and a null name; we read it before handing it back to if_freenameindex.
        unsafe {
            let head = libc::if_nameindex();
            if head.is_null() {
                return Err(io::Error::last_os_error());
            }
            let mut p = head;
            while (*p).if_index != 0 && !(*p).if_name.is_null() {
                let name = CStr::from_ptr((*p).if_name).to_string_lossy().into_owned();
                links.insert(name, (*p).if_index);
                p = p.add(1);
            }
            libc::if_freenameindex(head);
        }
        Ok(LinkSnapshot { links })
    }

    pub fn contains(&self, name: &str) -> bool {
        self.links.contains_key(name)
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.links.keys().map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn current_has_loopback() {
        let s = LinkSnapshot::current().unwrap();
        assert!(s.contains("lo"), "{:?}", s);
    }
}
