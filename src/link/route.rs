//! Which device the kernel routes an address out of (RTM_GETROUTE for one address, as
//! `ip route get` asks), to name the device that keeps a slow flow out of the
//! flowtable: a flow is offloaded only when both its devices are hooked.

use std::collections::HashMap;
use std::net::IpAddr;

use futures_util::TryStreamExt;
use netlink_packet_route::route::{RouteAttribute, RouteMessage};
use rtnetlink::{Handle, RouteMessageBuilder};

/// Route lookups of one listing, each address asked once, at most `budget` asked.
pub struct Routes {
    handle: Handle,
    cache: HashMap<IpAddr, Option<String>>,
    budget: usize,
}

impl Routes {
    /// A route socket of its own (the link watcher's is a multicast listener).
    pub fn open(budget: usize) -> std::io::Result<Routes> {
        let (conn, handle, _) = rtnetlink::new_connection()?;
        tokio::spawn(conn);
        Ok(Routes {
            handle,
            cache: HashMap::new(),
            budget,
        })
    }

    /// The device traffic to `addr` leaves by, if the kernel has a route (and the
    /// budget is not spent: a listing of a million slow flows asks a few hundred).
    pub async fn device(&mut self, addr: IpAddr) -> Option<String> {
        if let Some(d) = self.cache.get(&addr) {
            return d.clone();
        }
        if self.budget == 0 {
            return None;
        }
        self.budget -= 1;
        let dev = self.lookup(addr).await;
        self.cache.insert(addr, dev.clone());
        dev
    }

    async fn lookup(&self, addr: IpAddr) -> Option<String> {
        let len = if addr.is_ipv4() { 32 } else { 128 };
        let msg: RouteMessage = RouteMessageBuilder::<IpAddr>::new()
            .destination_prefix(addr, len)
            .ok()?
            .build();
        let mut answers = self.handle.route().get(msg).execute();
        let route = answers.try_next().await.ok()??;
        let index = route.attributes.iter().find_map(|a| match a {
            RouteAttribute::Oif(i) => Some(*i),
            _ => None,
        })?;
        name_of(index)
    }
}

fn name_of(index: u32) -> Option<String> {
    let mut buf = [0 as libc::c_char; libc::IF_NAMESIZE];
    // SAFETY: buf has IF_NAMESIZE bytes, as if_indextoname requires.
    let p = unsafe { libc::if_indextoname(index, buf.as_mut_ptr()) };
    if p.is_null() {
        return None;
    }
    // SAFETY: on success buf holds a NUL-terminated name.
    let name = unsafe { std::ffi::CStr::from_ptr(buf.as_ptr()) };
    Some(name.to_string_lossy().into_owned())
}
