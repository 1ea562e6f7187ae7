//! The thin runtime: reads the kernel into the plans' inputs and carries the plans out, over
//! one rtnetlink connection per network namespace.

use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, IntoRawFd};
use std::sync::Arc;

use futures::TryStreamExt;
use rtnetlink::packet_core::{DefaultNla, NLA_F_NESTED};
use rtnetlink::packet_route::AddressFamily;
use rtnetlink::packet_route::address::{AddressAttribute, AddressMessage};
use rtnetlink::packet_route::link::{
    AfSpecInet, AfSpecUnspec, InfoBridgePort, InfoData, InfoKind, InfoPortData, InfoVeth,
    InfoVxlan, LinkAttribute, LinkFlags, LinkInfo, LinkMessage,
};
use rtnetlink::packet_route::neighbour::{
    NeighbourAddress, NeighbourAttribute, NeighbourFlags, NeighbourMessage, NeighbourState,
};
use rtnetlink::packet_route::route::{RouteAddress, RouteAttribute, RouteHeader, RouteMessage};
use rtnetlink::sys::protocols::NETLINK_ROUTE;
use rtnetlink::sys::{Socket, TokioSocket};
use rtnetlink::{
    AddressMessageBuilder, Handle, LinkBridge, LinkBridgePort, LinkMessageBuilder, LinkUnspec,
    LinkVeth, LinkVxlan, RouteMessageBuilder,
};

use crate::OverlayError;
use crate::model::{
    Mac, NetworkDevices, RemoteEndpoint, TaskInterface, VXLAN_PORT, bridge_name, vxlan_name,
};
use crate::netns::NetNs;
use crate::plan::{
    EndpointOp, EndpointTables, LinkKind, LinkState, NetworkState, NetworkStep, PortFlags,
    TaskObserved, TaskStep, VXLAN_PORT_FLAGS, VxlanConfig, networks_from_links, plan_endpoints,
    plan_network, plan_remove_network, plan_task, plan_unplumb, run_undoable,
};

type Result<T> = std::result::Result<T, OverlayError>;

/// `IFLA_INET_CONF` inside `IFLA_AF_SPEC`/`AF_INET`, and `IPV4_DEVCONF_FORWARDING` in it.
const IFLA_INET_CONF: u16 = 1;
const IPV4_DEVCONF_FORWARDING: u16 = 1;

/// The overlay's devices in one network namespace: a node's, where meshd lives.
///
/// Every method reads the kernel, plans with the pure functions of [`crate::plan`] (which refuse
/// bad input before anything changes), executes the plan and returns the steps it applied (empty
/// when everything was already right). Calls for one network should not run concurrently.
#[derive(Clone)]
pub struct Overlay {
    nl: Netlink,
}

impl Overlay {
    /// Connects to the namespace of the calling thread (meshd's node namespace). Call it inside
    /// a tokio runtime: the connection runs as a task on it.
    pub fn connect() -> Result<Self> {
        Ok(Self {
            nl: Netlink::connect_here("this namespace")?,
        })
    }

    /// Connects to namespace `ns`, from any thread (tests drive each lab node this way).
    pub fn connect_in(ns: &NetNs) -> Result<Self> {
        Ok(Self {
            nl: Netlink::connect_in(ns)?,
        })
    }

    /// Creates or repairs network `net`'s bridge `mbr<vni>` and VXLAN device `mvx<vni>`. A VXLAN
    /// device that had to be recreated has lost its entries: call
    /// [`set_remote_endpoints`](Self::set_remote_endpoints) after this (it is cheap when nothing
    /// changed).
    pub async fn ensure_network(&self, net: &NetworkDevices) -> Result<Vec<NetworkStep>> {
        let links = self.nl.links().await?;
        let steps = plan_network(net, &links)?;
        for step in &steps {
            self.apply_network_step(step).await?;
        }
        Ok(steps)
    }

    /// Deletes network `vni`'s devices (with their FDB and neighbour entries). Refused while a
    /// task veth is still in its bridge. Nothing to delete is not an error.
    pub async fn remove_network(&self, vni: u32) -> Result<Vec<NetworkStep>> {
        let links = self.nl.links().await?;
        let steps = plan_remove_network(vni, &links)?;
        for step in &steps {
            self.apply_network_step(step).await?;
        }
        Ok(steps)
    }

    /// The networks whose devices exist in this namespace, read from the kernel.
    pub async fn list_networks(&self) -> Result<Vec<NetworkState>> {
        Ok(networks_from_links(&self.nl.links().await?))
    }

    /// Makes network `vni`'s static entries for remote tasks exactly `endpoints`: on `mvx<vni>`
    /// an FDB entry (self, dst = VTEP, permanent) and a neighbour (permanent, for the proxy ARP
    /// answer), on the bridge an FDB entry to the VXLAN port (master, static). Returns the
    /// changes applied.
    pub async fn set_remote_endpoints(
        &self,
        vni: u32,
        endpoints: &[RemoteEndpoint],
    ) -> Result<Vec<EndpointOp>> {
        let links = self.nl.links().await?;
        let vx = vxlan_name(vni);
        let br = bridge_name(vni);
        let vxlan = links
            .iter()
            .find(|l| l.name == vx && l.kind == LinkKind::Vxlan);
        let bridge = links
            .iter()
            .find(|l| l.name == br && l.kind == LinkKind::Bridge);
        let (Some(vxlan), Some(bridge)) = (vxlan, bridge) else {
            return Err(OverlayError::invalid(format!(
                "network {vni} has no {vx} in a bridge {br} on this node; call ensure_network first"
            )));
        };
        if vxlan.master != Some(bridge.index) {
            return Err(OverlayError::invalid(format!(
                "{vx} is not a port of {br}; call ensure_network first"
            )));
        }
        let actual = self.nl.endpoint_tables(vxlan.index).await?;
        let ops = plan_endpoints(endpoints, &actual)?;
        for op in &ops {
            self.nl
                .apply_endpoint_op(vxlan.index, *op)
                .await
                .map_err(|e| with_context(e, &format!("network {vni}: {op}")))?;
        }
        Ok(ops)
    }

    /// Gives the task whose namespace is `netns` (a container's: [`NetNs::of_pid`]) exactly the
    /// interfaces `ifaces`, `lo` up, and a default route via `gateway` (the node's address on the
    /// task's first network). Interfaces already in place are kept. When a step fails, the veths
    /// this call created are deleted again, so the task is left as it was found.
    pub async fn plumb_task(
        &self,
        netns: &NetNs,
        ifaces: &[TaskInterface],
        gateway: Option<Ipv4Addr>,
    ) -> Result<Vec<TaskStep>> {
        let task = Netlink::connect_in(netns)?;
        let seen = TaskObserved {
            node_links: self.nl.links().await?,
            task_links: task.links().await?,
            default_gateway: task.default_gateway().await?,
        };
        let steps = plan_task(ifaces, gateway, &seen)?;
        let task = &task;
        run_undoable(
            &steps,
            |step: &TaskStep| async move {
                self.apply_task_step(task, netns, step)
                    .await
                    .map_err(|e| with_context(e, &step.to_string()))
            },
            |host: String| async move {
                let index = self.nl.index_of(&host).await?;
                self.nl.delete(index, &host).await
            },
        )
        .await?;
        Ok(steps)
    }

    /// Deletes the task veths `host_ifnames` (each takes its peer in the task with it). Names
    /// that do not exist are skipped; a name that is not a veth is refused before anything is
    /// deleted. Returns the names deleted.
    pub async fn unplumb_task(&self, host_ifnames: &[String]) -> Result<Vec<String>> {
        let links = self.nl.links().await?;
        let names = plan_unplumb(host_ifnames, &links)?;
        for name in &names {
            let index = self.nl.index_of(name).await?;
            self.nl.delete(index, name).await?;
        }
        Ok(names)
    }

    /// The MTU of interface `ifname` (the underlay); [`crate::overlay_mtu`] gives the network's.
    pub async fn underlay_mtu(&self, ifname: &str) -> Result<u32> {
        self.nl
            .links()
            .await?
            .into_iter()
            .find(|l| l.name == ifname)
            .map(|l| l.mtu)
            .ok_or_else(|| {
                OverlayError::invalid(format!("underlay interface {ifname:?} does not exist"))
            })
    }

    async fn apply_network_step(&self, step: &NetworkStep) -> Result<()> {
        let nl = &self.nl;
        let what = step.to_string();
        let link = nl.handle.link();
        let result = match step {
            NetworkStep::Delete { name, .. } => {
                let index = nl.index_of(name).await?;
                link.del(index).execute().await
            }
            NetworkStep::CreateBridge { name, mtu, mac } => {
                link.add(
                    LinkBridge::new(name)
                        .mtu(*mtu)
                        .address(mac.octets().to_vec())
                        .build(),
                )
                .execute()
                .await
            }
            NetworkStep::CreateVxlan {
                name,
                vni,
                local,
                underlay,
                mtu,
            } => {
                let dev = nl.index_of(underlay).await?;
                link.add(
                    LinkVxlan::new(name, *vni)
                        .dev(dev)
                        .port(VXLAN_PORT)
                        .local(*local)
                        .learning(false)
                        .proxy(true)
                        .mtu(*mtu)
                        .build(),
                )
                .execute()
                .await
            }
            NetworkStep::SetMtu { name, mtu } => {
                let index = nl.index_of(name).await?;
                link.change(LinkUnspec::new_with_index(index).mtu(*mtu).build())
                    .execute()
                    .await
            }
            NetworkStep::SetMac { name, mac } => {
                let index = nl.index_of(name).await?;
                link.change(
                    LinkUnspec::new_with_index(index)
                        .address(mac.octets().to_vec())
                        .build(),
                )
                .execute()
                .await
            }
            NetworkStep::DisableForwarding { name } => {
                let index = nl.index_of(name).await?;
                link.change(disable_forwarding(index)).execute().await
            }
            NetworkStep::AddAddress {
                name,
                addr,
                prefix_len,
            } => {
                let index = nl.index_of(name).await?;
                nl.handle
                    .address()
                    .add(index, IpAddr::V4(*addr), *prefix_len)
                    .replace()
                    .execute()
                    .await
            }
            NetworkStep::DelAddress {
                name,
                addr,
                prefix_len,
            } => {
                let index = nl.index_of(name).await?;
                nl.del_address(index, *addr, *prefix_len).await
            }
            NetworkStep::Enslave { name, bridge } => {
                let index = nl.index_of(name).await?;
                let master = nl.index_of(bridge).await?;
                link.change(LinkUnspec::new_with_index(index).controller(master).build())
                    .execute()
                    .await
            }
            NetworkStep::SetPortFlags { name } => {
                let index = nl.index_of(name).await?;
                let PortFlags {
                    learning,
                    neigh_suppress,
                    unicast_flood,
                } = VXLAN_PORT_FLAGS;
                link.set_port(
                    LinkBridgePort::new(index)
                        .learning(learning)
                        .neigh_suppress(neigh_suppress)
                        .flood(unicast_flood)
                        .build(),
                )
                .execute()
                .await
            }
            NetworkStep::SetUp { name } => {
                let index = nl.index_of(name).await?;
                link.change(LinkUnspec::new_with_index(index).up().build())
                    .execute()
                    .await
            }
        };
        result.map_err(OverlayError::netlink(what))
    }

    /// Runs one task step; returns the host veth it created, if it created one.
    async fn apply_task_step(
        &self,
        task: &Netlink,
        netns: &NetNs,
        step: &TaskStep,
    ) -> Result<Option<String>> {
        let what = step.to_string();
        let node = &self.nl;
        let result = match step {
            TaskStep::DeleteHostLink { host, .. } => {
                let index = node.index_of(host).await?;
                node.handle.link().del(index).execute().await
            }
            TaskStep::CreateVeth {
                host,
                ifname,
                bridge,
                mac,
                mtu,
            } => {
                let master = node.index_of(bridge).await?;
                let peer = LinkUnspec::new_with_name(ifname)
                    .address(mac.octets().to_vec())
                    .mtu(*mtu)
                    .setns_by_fd(netns.as_fd().as_raw_fd())
                    .build();
                let pair = LinkMessageBuilder::<LinkVeth>::new_with_info_kind(InfoKind::Veth)
                    .name(host.clone())
                    .mtu(*mtu)
                    .controller(master)
                    .up()
                    .set_info_data(InfoData::Veth(InfoVeth::Peer(peer)))
                    .build();
                node.handle
                    .link()
                    .add(pair)
                    .execute()
                    .await
                    .map_err(OverlayError::netlink(what))?;
                return Ok(Some(host.clone()));
            }
            TaskStep::Enslave { host, bridge } => {
                let index = node.index_of(host).await?;
                let master = node.index_of(bridge).await?;
                node.handle
                    .link()
                    .change(LinkUnspec::new_with_index(index).controller(master).build())
                    .execute()
                    .await
            }
            TaskStep::SetHostMtu { host, mtu } => {
                let index = node.index_of(host).await?;
                node.handle
                    .link()
                    .change(LinkUnspec::new_with_index(index).mtu(*mtu).build())
                    .execute()
                    .await
            }
            TaskStep::SetHostUp { host } => {
                let index = node.index_of(host).await?;
                node.handle
                    .link()
                    .change(LinkUnspec::new_with_index(index).up().build())
                    .execute()
                    .await
            }
            TaskStep::SetTaskMtu { ifname, mtu } => {
                let index = task.index_of(ifname).await?;
                task.handle
                    .link()
                    .change(LinkUnspec::new_with_index(index).mtu(*mtu).build())
                    .execute()
                    .await
            }
            TaskStep::SetTaskMac { ifname, mac } => {
                let index = task.index_of(ifname).await?;
                task.handle
                    .link()
                    .change(
                        LinkUnspec::new_with_index(index)
                            .address(mac.octets().to_vec())
                            .build(),
                    )
                    .execute()
                    .await
            }
            TaskStep::DelTaskAddress {
                ifname,
                addr,
                prefix_len,
            } => {
                let index = task.index_of(ifname).await?;
                task.del_address(index, *addr, *prefix_len).await
            }
            TaskStep::AddTaskAddress {
                ifname,
                addr,
                prefix_len,
            } => {
                let index = task.index_of(ifname).await?;
                task.handle
                    .address()
                    .add(index, IpAddr::V4(*addr), *prefix_len)
                    .replace()
                    .execute()
                    .await
            }
            TaskStep::SetTaskUp { ifname } => {
                let index = task.index_of(ifname).await?;
                task.handle
                    .link()
                    .change(LinkUnspec::new_with_index(index).up().build())
                    .execute()
                    .await
            }
            TaskStep::SetLoopbackUp => {
                let index = task.index_of("lo").await?;
                task.handle
                    .link()
                    .change(LinkUnspec::new_with_index(index).up().build())
                    .execute()
                    .await
            }
            TaskStep::SetDefaultRoute { gateway } => {
                task.handle
                    .route()
                    .add(
                        RouteMessageBuilder::<Ipv4Addr>::new()
                            .gateway(*gateway)
                            .build(),
                    )
                    .replace()
                    .execute()
                    .await
            }
        };
        result.map_err(OverlayError::netlink(what))?;
        Ok(None)
    }
}

fn with_context(e: OverlayError, what: &str) -> OverlayError {
    match e {
        OverlayError::Netlink { .. } => e,
        other => OverlayError::Io {
            what: what.to_owned(),
            source: std::io::Error::other(other.to_string()),
        },
    }
}

/// `net.ipv4.conf.<index>.forwarding = 0`, by netlink: `IFLA_AF_SPEC` / `AF_INET` /
/// `IFLA_INET_CONF` / `IPV4_DEVCONF_FORWARDING`. (The crate's own devconf request leaves zero
/// values out, so the one attribute is built by hand.)
fn disable_forwarding(index: u32) -> LinkMessage {
    let mut conf = Vec::with_capacity(8);
    conf.extend_from_slice(&8u16.to_ne_bytes()); // nla_len: header + u32
    conf.extend_from_slice(&IPV4_DEVCONF_FORWARDING.to_ne_bytes());
    conf.extend_from_slice(&0u32.to_ne_bytes());
    let inet = AfSpecInet::Other(DefaultNla::new(IFLA_INET_CONF | NLA_F_NESTED, conf));
    LinkUnspec::new_with_index(index)
        .append_extra_attribute(LinkAttribute::AfSpecUnspec(vec![AfSpecUnspec::Inet(vec![
            inet,
        ])]))
        .build()
}

/// One rtnetlink connection, bound to the namespace it was opened in.
#[derive(Clone)]
struct Netlink {
    handle: Handle,
    /// Where it is, for error messages.
    place: String,
    /// Held for each dump: a netlink socket runs one dump at a time and answers a second one
    /// with EBUSY, and clones of one [`Overlay`] share the socket.
    dumps: Arc<tokio::sync::Mutex<()>>,
}

impl Netlink {
    fn connect_here(place: &str) -> Result<Self> {
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
    fn connect_in(ns: &NetNs) -> Result<Self> {
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

    async fn links(&self) -> Result<Vec<LinkState>> {
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

    async fn index_of(&self, name: &str) -> Result<u32> {
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

    async fn delete(&self, index: u32, name: &str) -> Result<()> {
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

    async fn del_address(
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

    async fn default_gateway(&self) -> Result<Option<Ipv4Addr>> {
        let _dump = self.dumps.lock().await;
        let routes: Vec<RouteMessage> = self
            .handle
            .route()
            .get(RouteMessageBuilder::<Ipv4Addr>::new().build())
            .execute()
            .try_collect()
            .await
            .map_err(OverlayError::netlink(format!(
                "listing routes in {}",
                self.place
            )))?;
        Ok(routes.iter().find_map(|r| {
            let main = r.header.table == RouteHeader::RT_TABLE_MAIN
                || r
                    .attributes
                    .iter()
                    .any(|a| matches!(a, RouteAttribute::Table(t) if *t == u32::from(RouteHeader::RT_TABLE_MAIN)));
            if r.header.address_family != AddressFamily::Inet
                || r.header.destination_prefix_length != 0
                || !main
            {
                return None;
            }
            r.attributes.iter().find_map(|a| match a {
                RouteAttribute::Gateway(RouteAddress::Inet(gw)) => Some(*gw),
                _ => None,
            })
        }))
    }

    /// The static entries on VXLAN device `vxlan` (its own FDB, the bridge's FDB entries that
    /// point at it, its permanent neighbours).
    async fn endpoint_tables(&self, vxlan: u32) -> Result<EndpointTables> {
        let _dump = self.dumps.lock().await;
        let mut t = EndpointTables::default();
        let fdb: Vec<NeighbourMessage> = self
            .handle
            .neighbours()
            .get()
            .set_address_family(AddressFamily::Bridge)
            .execute()
            .try_collect()
            .await
            .map_err(OverlayError::netlink(format!(
                "listing FDB entries in {}",
                self.place
            )))?;
        for n in fdb.iter().filter(|n| n.header.ifindex == vxlan) {
            let Some(mac) = lladdr_of(n) else { continue };
            // The bridge reports its entries with NDA_MASTER (not always NTF_MASTER); the VXLAN
            // device reports its own with NTF_SELF.
            let of_bridge = n.header.flags.contains(NeighbourFlags::Controller)
                || n.attributes
                    .iter()
                    .any(|a| matches!(a, NeighbourAttribute::Controller(_)));
            if of_bridge {
                // Static entries are ours; permanent ones are the port's own address.
                if n.header.state == NeighbourState::Noarp {
                    t.bridge_fdb.insert(mac);
                }
            } else if n.header.flags.contains(NeighbourFlags::Own) {
                // In an AF_BRIDGE message the crate leaves NDA_DST as raw bytes.
                let dst = n
                    .attributes
                    .iter()
                    .find_map(|a| match a {
                        NeighbourAttribute::Destination(NeighbourAddress::Inet(ip)) => Some(*ip),
                        NeighbourAttribute::Destination(NeighbourAddress::Other(b)) => {
                            <[u8; 4]>::try_from(b.as_slice()).ok().map(Ipv4Addr::from)
                        }
                        _ => None,
                    })
                    .unwrap_or(Ipv4Addr::UNSPECIFIED);
                t.vxlan_fdb.entry(mac).or_default().push(dst);
            }
        }
        let neighbours: Vec<NeighbourMessage> = self
            .handle
            .neighbours()
            .get()
            .set_address_family(AddressFamily::Inet)
            .execute()
            .try_collect()
            .await
            .map_err(OverlayError::netlink(format!(
                "listing neighbours in {}",
                self.place
            )))?;
        for n in neighbours
            .iter()
            .filter(|n| n.header.ifindex == vxlan && n.header.state == NeighbourState::Permanent)
        {
            let ip = n.attributes.iter().find_map(|a| match a {
                NeighbourAttribute::Destination(NeighbourAddress::Inet(ip)) => Some(*ip),
                _ => None,
            });
            if let (Some(ip), Some(mac)) = (ip, lladdr_of(n)) {
                t.neighbours.insert(ip, mac);
            }
        }
        Ok(t)
    }

    async fn apply_endpoint_op(&self, vxlan: u32, op: EndpointOp) -> Result<()> {
        let neigh = self.handle.neighbours();
        let result = match op {
            EndpointOp::SetVxlanFdb { mac, vtep } => {
                neigh
                    .add_bridge(vxlan, &mac.octets())
                    .flags(NeighbourFlags::Own)
                    .state(NeighbourState::Permanent)
                    .destination(IpAddr::V4(vtep))
                    .replace()
                    .execute()
                    .await
            }
            EndpointOp::DelVxlanFdb { mac } => {
                neigh
                    .del(fdb_message(vxlan, mac, NeighbourFlags::Own))
                    .execute()
                    .await
            }
            EndpointOp::SetBridgeFdb { mac } => {
                neigh
                    .add_bridge(vxlan, &mac.octets())
                    .flags(NeighbourFlags::Controller)
                    .state(NeighbourState::Noarp)
                    .replace()
                    .execute()
                    .await
            }
            EndpointOp::DelBridgeFdb { mac } => {
                neigh
                    .del(fdb_message(vxlan, mac, NeighbourFlags::Controller))
                    .execute()
                    .await
            }
            EndpointOp::SetNeighbour { ip, mac } => {
                neigh
                    .add(vxlan, IpAddr::V4(ip))
                    .link_layer_address(&mac.octets())
                    .state(NeighbourState::Permanent)
                    .replace()
                    .execute()
                    .await
            }
            EndpointOp::DelNeighbour { ip } => {
                let mut msg = NeighbourMessage::default();
                msg.header.family = AddressFamily::Inet;
                msg.header.ifindex = vxlan;
                msg.attributes
                    .push(NeighbourAttribute::Destination(NeighbourAddress::Inet(ip)));
                neigh.del(msg).execute().await
            }
        };
        result.map_err(OverlayError::netlink(format!("{op} in {}", self.place)))
    }
}

fn require_runtime() -> Result<()> {
    tokio::runtime::Handle::try_current()
        .map(|_| ())
        .map_err(|_| OverlayError::Io {
            what: "connecting to netlink".to_owned(),
            source: std::io::Error::other("Overlay needs a tokio runtime: call it from one"),
        })
}

fn fdb_message(ifindex: u32, mac: Mac, flags: NeighbourFlags) -> NeighbourMessage {
    let mut msg = NeighbourMessage::default();
    msg.header.family = AddressFamily::Bridge;
    msg.header.ifindex = ifindex;
    msg.header.flags = flags;
    msg.attributes
        .push(NeighbourAttribute::LinkLayerAddress(mac.octets().to_vec()));
    msg
}

fn lladdr_of(n: &NeighbourMessage) -> Option<Mac> {
    n.attributes.iter().find_map(|a| match a {
        NeighbourAttribute::LinkLayerAddress(b) => Mac::try_from(b.as_slice()).ok(),
        _ => None,
    })
}

fn ipv4_of(a: &AddressMessage) -> Option<Ipv4Addr> {
    if a.header.family != AddressFamily::Inet {
        return None;
    }
    let pick = |want_local: bool| {
        a.attributes.iter().find_map(|attr| match attr {
            AddressAttribute::Local(IpAddr::V4(ip)) if want_local => Some(*ip),
            AddressAttribute::Address(IpAddr::V4(ip)) if !want_local => Some(*ip),
            _ => None,
        })
    };
    pick(true).or_else(|| pick(false))
}

/// A link message reduced to what the plans compare.
fn link_state(msg: &LinkMessage) -> LinkState {
    let mut l = LinkState {
        index: msg.header.index,
        up: msg.header.flags.contains(LinkFlags::Up),
        ..LinkState::default()
    };
    for attr in &msg.attributes {
        match attr {
            LinkAttribute::IfName(n) => l.name.clone_from(n),
            LinkAttribute::Mtu(m) => l.mtu = *m,
            LinkAttribute::Address(a) => l.mac = Mac::try_from(a.as_slice()).ok(),
            LinkAttribute::Controller(m) if *m != 0 => l.master = Some(*m),
            LinkAttribute::Link(p) => l.peer = Some(*p),
            LinkAttribute::LinkInfo(infos) => {
                for info in infos {
                    match info {
                        LinkInfo::Kind(k) => {
                            l.kind = match k {
                                InfoKind::Bridge => LinkKind::Bridge,
                                InfoKind::Vxlan => LinkKind::Vxlan,
                                InfoKind::Veth => LinkKind::Veth,
                                _ => LinkKind::Other,
                            };
                        }
                        LinkInfo::Data(InfoData::Vxlan(v)) => l.vxlan = Some(vxlan_config(v)),
                        LinkInfo::PortData(InfoPortData::BridgePort(p)) => {
                            l.port = Some(port_flags(p));
                        }
                        _ => {}
                    }
                }
            }
            LinkAttribute::AfSpecUnspec(specs) => {
                for spec in specs {
                    if let AfSpecUnspec::Inet(inet) = spec {
                        for i in inet {
                            if let AfSpecInet::DevConf(c) = i {
                                l.ipv4_forwarding = Some(c.forwarding != 0);
                            }
                        }
                    }
                }
            }
            _ => {}
        }
    }
    l
}

fn vxlan_config(attrs: &[InfoVxlan]) -> VxlanConfig {
    let mut c = VxlanConfig {
        learning: true,
        ..VxlanConfig::default()
    };
    for a in attrs {
        match a {
            InfoVxlan::Id(v) => c.vni = Some(*v),
            InfoVxlan::Port(p) => c.port = Some(*p),
            InfoVxlan::Local(ip) => c.local = Some(*ip),
            InfoVxlan::Link(i) if *i != 0 => c.underlay = Some(*i),
            InfoVxlan::Learning(b) => c.learning = *b,
            InfoVxlan::Proxy(b) => c.proxy = *b,
            _ => {}
        }
    }
    c
}

fn port_flags(attrs: &[InfoBridgePort]) -> PortFlags {
    // The kernel's defaults for a new port, overridden by what it reports.
    let mut f = PortFlags {
        learning: true,
        neigh_suppress: false,
        unicast_flood: true,
    };
    for a in attrs {
        match a {
            InfoBridgePort::Learning(b) => f.learning = *b,
            InfoBridgePort::NeighSupress(b) => f.neigh_suppress = *b,
            InfoBridgePort::UnicastFlood(b) => f.unicast_flood = *b,
            _ => {}
        }
    }
    f
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Clones of one overlay share a netlink socket, which runs one dump at a time: concurrent
    /// reads must not fail with EBUSY (they did before dumps were serialised). Reads only.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_reads_on_one_connection_succeed() {
        let overlay = Overlay::connect().expect("netlink");
        let mut reads = tokio::task::JoinSet::new();
        for i in 0..32 {
            let o = overlay.clone();
            reads.spawn(async move {
                if i % 2 == 0 {
                    o.list_networks().await.map(|_| ())
                } else {
                    o.underlay_mtu("lo").await.map(|_| ())
                }
            });
        }
        while let Some(r) = reads.join_next().await {
            r.expect("joined").expect("a read on a shared connection");
        }
    }

    /// meshd plumbs tasks from tasks spawned on a multi-threaded runtime: the future must be
    /// `Send` with borrowed locals in it (built, never run).
    #[test]
    fn plumbing_can_be_spawned() {
        fn spawnable<F: Future + Send + 'static>(_: F) {}
        spawnable(async {
            let overlay = Overlay::connect()?;
            let ns = NetNs::current().map_err(OverlayError::io("this namespace"))?;
            let ifaces: Vec<TaskInterface> = Vec::new();
            overlay.plumb_task(&ns, &ifaces, None).await?;
            overlay.unplumb_task(&[]).await?;
            Ok::<(), OverlayError>(())
        });
    }
}
