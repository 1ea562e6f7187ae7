//! One rtnetlink connection per namespace, and what it reads: links with their addresses, the
//! default route.

use std::net::Ipv4Addr;
use std::os::fd::{FromRawFd, IntoRawFd};
use std::sync::Arc;

use futures::TryStreamExt;
use rtnetlink::packet_route::AddressFamily;
use rtnetlink::packet_route::address::AddressMessage;
use rtnetlink::packet_route::link::LinkMessage;
use rtnetlink::packet_route::route::{RouteAddress, RouteAttribute, RouteHeader, RouteMessage};
use rtnetlink::sys::protocols::NETLINK_ROUTE;
use rtnetlink::sys::{Socket, TokioSocket};
use rtnetlink::{AddressMessageBuilder, Handle, RouteMessageBuilder};

use super::Result;
use super::decode::{ipv4_of, link_state};
use crate::OverlayError;
use crate::netns::NetNs;
use crate::plan::LinkState;

/// One rtnetlink connection, bound to the namespace it was opened in.
#[derive(Clone)]
pub(super) struct Netlink {
    pub(super) handle: Handle,
    /// Where it is, for error messages.
    pub(super) place: String,
    /// Held for each dump: a netlink socket runs one dump at a time and answers a second one
    /// with EBUSY, and clones of one [`Overlay`] share the socket.
    pub(super) dumps: Arc<tokio::sync::Mutex<()>>,
}

impl Netlink {
    pub(super) fn connect_here(place: &str) -> Result<Self> {
        require_runtime()?;
        let (conn, handle, _) =
            rtnetlink::new_connection().map_err(OverlayError::io("opening a netlink socket"))?;
        tokio::spawn(conn);
        Ok(Self {
            handle,
            place: place.to_owned(),
            dumps: Arc::default(),
        })
    }

    /// A socket keeps the namespace it was created in: make it on a thread inside `ns`, use it
    /// from here.
    pub(super) fn connect_in(ns: &NetNs) -> Result<Self> {
        require_runtime()?;
        let place = format!("namespace {}", ns.path().display());
        let socket = ns
            .run(|| Socket::new(NETLINK_ROUTE))
            .and_then(|s| s)
            .map_err(OverlayError::io(format!(
                "opening a netlink socket in {place}"
            )))?;
        // SAFETY: the descriptor is a netlink socket just released by its only owner.
        let socket = unsafe { TokioSocket::from_raw_fd(socket.into_raw_fd()) };
        let (conn, handle, _) = rtnetlink::from_socket(socket);
        tokio::spawn(conn);
        Ok(Self {
            handle,
            place,
            dumps: Arc::default(),
        })
    }

    pub(super) async fn links(&self) -> Result<Vec<LinkState>> {
        let _dump = self.dumps.lock().await;
        let msgs: Vec<LinkMessage> = self
            .handle
            .link()
            .get()
            .execute()
            .try_collect()
            .await
            .map_err(OverlayError::netlink(format!(
                "listing links in {}",
                self.place
            )))?;
        let mut links: Vec<LinkState> = msgs.iter().map(link_state).collect();
        let addrs: Vec<AddressMessage> = self
            .handle
            .address()
            .get()
            .execute()
            .try_collect()
            .await
            .map_err(OverlayError::netlink(format!(
                "listing addresses in {}",
                self.place
            )))?;
        for a in &addrs {
            if let Some(ip) = ipv4_of(a)
                && let Some(l) = links.iter_mut().find(|l| l.index == a.header.index)
            {
                l.ipv4.push((ip, a.header.prefix_len));
            }
        }
        Ok(links)
    }

    pub(super) async fn index_of(&self, name: &str) -> Result<u32> {
        let msgs: Vec<LinkMessage> = self
            .handle
            .link()
            .get()
            .match_name(name)
            .execute()
            .try_collect()
            .await
            .map_err(OverlayError::netlink(format!(
                "finding link {name} in {}",
                self.place
            )))?;
        msgs.first()
            .map(|m| m.header.index)
            .ok_or_else(|| OverlayError::invalid(format!("no link {name} in {}", self.place)))
    }

    pub(super) async fn delete(&self, index: u32, name: &str) -> Result<()> {
        self.handle
            .link()
            .del(index)
            .execute()
            .await
            .map_err(OverlayError::netlink(format!(
                "deleting {name} in {}",
                self.place
            )))
    }

    pub(super) async fn del_address(
        &self,
        index: u32,
        addr: Ipv4Addr,
        prefix_len: u8,
    ) -> std::result::Result<(), rtnetlink::Error> {
        let msg = AddressMessageBuilder::<Ipv4Addr>::new()
            .index(index)
            .address(addr, prefix_len)
            .build();
        self.handle.address().del(msg).execute().await
    }

    /// Every IPv4 route of the namespace (one dump at a time).
    async fn ipv4_routes(&self) -> Result<Vec<RouteMessage>> {
        let _dump = self.dumps.lock().await;
        self.handle
            .route()
            .get(RouteMessageBuilder::<Ipv4Addr>::new().build())
            .execute()
            .try_collect()
            .await
            .map_err(OverlayError::netlink(format!(
                "listing routes in {}",
                self.place
            )))
    }

    pub(super) async fn default_gateway(&self) -> Result<Option<Ipv4Addr>> {
        let routes = self.ipv4_routes().await?;
        Ok(routes.iter().find_map(|r| {
            if r.header.address_family != AddressFamily::Inet
                || r.header.destination_prefix_length != 0
                || !in_main_table(r)
            {
                return None;
            }
            r.attributes.iter().find_map(|a| match a {
                RouteAttribute::Gateway(RouteAddress::Inet(gw)) => Some(*gw),
                _ => None,
            })
        }))
    }
}

impl Netlink {
    /// The unicast IPv4 routes of the main table (native routing's next hops to other nodes).
    pub(super) async fn main_routes(&self) -> Result<Vec<crate::plan::Ipv4Route>> {
        use rtnetlink::packet_route::route::RouteType;
        let routes = self.ipv4_routes().await?;
        Ok(routes
            .iter()
            .filter(|r| {
                r.header.address_family == AddressFamily::Inet
                    && r.header.kind == RouteType::Unicast
                    && in_main_table(r)
            })
            .map(|r| crate::plan::Ipv4Route {
                dst: r
                    .attributes
                    .iter()
                    .find_map(|a| match a {
                        RouteAttribute::Destination(RouteAddress::Inet(d)) => Some(*d),
                        _ => None,
                    })
                    .unwrap_or(Ipv4Addr::UNSPECIFIED),
                prefix_len: r.header.destination_prefix_length,
                gateway: r.attributes.iter().find_map(|a| match a {
                    RouteAttribute::Gateway(RouteAddress::Inet(gw)) => Some(*gw),
                    _ => None,
                }),
            })
            .collect())
    }
}

impl Netlink {
    /// meshd's native routes (protocol [`crate::plan::NATIVE_ROUTE_PROTOCOL`], main table), by
    /// destination.
    pub(super) async fn native_routes(
        &self,
    ) -> Result<std::collections::BTreeMap<Ipv4Addr, crate::plan::NativeRoute>> {
        use rtnetlink::packet_route::route::RouteProtocol;
        let routes = self.ipv4_routes().await?;
        let ours = RouteProtocol::Other(crate::plan::NATIVE_ROUTE_PROTOCOL);
        Ok(routes
            .iter()
            .filter(|r| r.header.protocol == ours && r.header.destination_prefix_length == 32)
            .filter_map(|r| {
                let mut dst = None;
                let mut via = None;
                let mut src = None;
                for a in &r.attributes {
                    match a {
                        RouteAttribute::Destination(RouteAddress::Inet(d)) => dst = Some(*d),
                        RouteAttribute::Gateway(RouteAddress::Inet(g)) => via = Some(*g),
                        RouteAttribute::PrefSource(RouteAddress::Inet(s)) => src = Some(*s),
                        _ => {}
                    }
                }
                Some((
                    dst?,
                    crate::plan::NativeRoute {
                        via: via?,
                        src: src?,
                    },
                ))
            })
            .collect())
    }

    /// Writes (or replaces) the native route to `dst`.
    pub(super) async fn put_native_route(
        &self,
        dst: Ipv4Addr,
        route: crate::plan::NativeRoute,
        oif: u32,
    ) -> Result<()> {
        use rtnetlink::packet_route::route::RouteProtocol;
        let msg = RouteMessageBuilder::<Ipv4Addr>::new()
            .destination_prefix(dst, 32)
            .gateway(route.via)
            .pref_source(route.src)
            .output_interface(oif)
            .protocol(RouteProtocol::Other(crate::plan::NATIVE_ROUTE_PROTOCOL))
            .build();
        self.handle
            .route()
            .add(msg)
            .replace()
            .execute()
            .await
            .map_err(OverlayError::netlink(format!(
                "adding the route to {dst} via {} in {}",
                route.via, self.place
            )))
    }

    /// Removes the native route to `dst`.
    pub(super) async fn del_native_route(&self, dst: Ipv4Addr) -> Result<()> {
        use rtnetlink::packet_route::route::RouteProtocol;
        let msg = RouteMessageBuilder::<Ipv4Addr>::new()
            .destination_prefix(dst, 32)
            .protocol(RouteProtocol::Other(crate::plan::NATIVE_ROUTE_PROTOCOL))
            .build();
        self.handle
            .route()
            .del(msg)
            .execute()
            .await
            .map_err(OverlayError::netlink(format!(
                "removing the route to {dst} in {}",
                self.place
            )))
    }
}

pub(super) fn require_runtime() -> Result<()> {
    tokio::runtime::Handle::try_current()
        .map(|_| ())
        .map_err(|_| OverlayError::Io {
            what: "connecting to netlink".to_owned(),
            source: std::io::Error::other("Overlay needs a tokio runtime: call it from one"),
        })
}

/// Whether r is in the main table (its header holds only the low 8 bits of a table id).
fn in_main_table(r: &RouteMessage) -> bool {
    r.header.table == RouteHeader::RT_TABLE_MAIN
        || r.attributes.iter().any(
            |a| matches!(a, RouteAttribute::Table(t) if *t == u32::from(RouteHeader::RT_TABLE_MAIN)),
        )
}
