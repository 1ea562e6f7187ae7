/* mesh_abi.h: the only ABI between meshd's kernel programs and user space.
 *
 * Every map key and value lives here, and nowhere else. Rules (Katran, aya):
 *  - fixed-width types only, byte order explicit (__be32/__be16 travel in network order);
 *  - no implicit padding: pad by hand, so C and Rust agree byte for byte;
 *  - flags are __u32, never bool;
 *  - every struct has a one-line comment and a Rust mirror in ebpf/src/abi.rs, listed in
 *    abi/layout.c so the build checks the two against each other.
 */
#ifndef MESH_ABI_H
#define MESH_ABI_H

#include <linux/types.h>

/* Sizes of the tables (mirrored as constants in ebpf/src/abi.rs). */
/* Maglev ring slots per ring: a prime; 16381 slots keep a ring at 64 KiB while staying above
 * 100 slots per backend up to 160 backends (the Maglev paper's bound for near-even shares). */
#define MESH_RING_SIZE 16381
#define MESH_MAX_RINGS 1024        /* published ports + (service, network) VIPs: 64 MiB of rings */
#define MESH_MAX_BACKENDS 8192     /* (address, port) pairs across all rings */
#define MESH_MAX_SERVICES 1024     /* counter slots */
#define MESH_MAX_PORTS 4096        /* published (protocol, port) pairs */
#define MESH_MAX_VIPS 4096         /* (network, VIP) pairs */
#define MESH_MAX_IFACES 4096       /* bridges and task veths */
#define MESH_CT_SIZE 262144        /* conntrack entries (both directions count) */
#define MESH_FRAG_SIZE 8192        /* fragmented datagrams remembered (LRU) */
#define MESH_MAX_NODES 4096        /* cluster nodes' underlay addresses (mesh_nodes) */
#define MESH_DROP_REASONS 4        /* slots of mesh_drops */
#define MESH_VXLAN_PORT 4789

/* A packet and byte counter, per CPU in the maps that hold it. */
struct mesh_counter {
	__u64 packets;
	__u64 bytes;
};

/* Node-wide settings, the single entry of mesh_config. */
struct mesh_config {
	__be32 underlay_addr;      /* advertised address: published ports' destination, VXLAN outer source */
	__be32 ingress_addr;       /* this node's address on the ingress network: the SNAT source */
	__u32 underlay_ifindex;
	__u32 ingress_bridge_ifindex; /* 0 until the ingress bridge is attached */
	__u32 ingress_vni;
	__u8 underlay_mac[6];
	__u8 bridge_mac[6];        /* the ingress bridge's MAC: L2 source of frames sent into the overlay */
	__u32 flags;               /* MESH_CFG_* */
	__u32 ingress_vxlan_ifindex; /* the ingress network's VXLAN device, 0 until attached */
	__u64 tcp_timeout_ns;      /* idle time after which a TCP flow is picked again (same backend if the set is unchanged) */
	__u64 udp_timeout_ns;
};
#define MESH_CFG_READY 1u          /* user space wrote this entry */
#define MESH_CFG_XDP 2u            /* the XDP program serves remote backends and VXLAN replies */
#define MESH_CFG_NODES 4u          /* mesh_nodes is filled: VXLAN is accepted only from its addresses */

/* Slots of mesh_drops (struct mesh_counter per CPU): packets the programs dropped, by reason. */
#define MESH_DROP_VXLAN_SOURCE 0   /* UDP to this node's VXLAN port from an address not in mesh_nodes */
#define MESH_DROP_CT_FULL 1        /* a new flow whose conntrack entry could not be written */
#define MESH_DROP_SNAT_EXHAUSTED 2 /* a new published-port flow that found no free SNAT port */

/* Value of mesh_nodes (key: a cluster node's underlay address, __be32): that it is one. */
struct mesh_node {
	__u32 flags;               /* MESH_NODE_* */
};
#define MESH_NODE_MEMBER 1u

/* Key of mesh_ports: a published (protocol, port) on the underlay address. */
struct mesh_port_key {
	__be16 port;
	__u8 proto;                /* IPPROTO_TCP or IPPROTO_UDP */
	__u8 pad;
};

/* Key of mesh_vips: a service VIP on one overlay network (any port; ports are kept). */
struct mesh_vip_key {
	__u32 vni;
	__be32 addr;
};

/* Value of mesh_ports and mesh_vips: which service counts it and which ring picks the backend. */
struct mesh_frontend {
	__u32 svc_id;              /* slot in mesh_stats */
	__u32 ring_id;             /* ring in mesh_rings */
	__u32 flags;               /* MESH_FE_* */
};
#define MESH_FE_NO_BACKEND 1u      /* published but empty: TCP answered with RST, UDP dropped */
#define MESH_FE_HOST 2u            /* mode=host: the ring holds only this node's tasks */

/* Value of mesh_backends (an array indexed by backend id). */
struct mesh_backend {
	__be32 addr;               /* task address on the frontend's network */
	__be32 vtep;               /* underlay address of the task's node */
	__be16 port;               /* target port; 0 keeps the packet's port (VIPs) */
	__u8 mac[6];               /* task MAC on that network */
	__u32 flags;               /* MESH_BE_* */
};
#define MESH_BE_VALID 1u
#define MESH_BE_LOCAL 2u           /* the task runs on this node */

/* Value of mesh_ifaces (key: ifindex): an interface the tc programs serve. */
struct mesh_iface {
	__u32 vni;                 /* its network */
	__u32 kind;                /* MESH_IF_* */
	__u8 mac[6];               /* its own MAC: the answer to ARP for a VIP */
	__u8 pad[2];
};
#define MESH_IF_BRIDGE 1u
#define MESH_IF_TASK 2u

/* Key of mesh_ct: one direction of one flow, as it arrives before translation. */
struct mesh_ct_key {
	__be32 saddr;
	__be32 daddr;
	__be16 sport;
	__be16 dport;
	__u8 proto;
	__u8 kind;                 /* MESH_CT_* */
	__u8 pad[2];
};
#define MESH_CT_INGRESS 1          /* client -> node:published */
#define MESH_CT_INGRESS_REPLY 2    /* backend -> node ingress address:SNAT port */
#define MESH_CT_VIP 3              /* task -> VIP */
#define MESH_CT_VIP_REPLY 4        /* backend -> task */
#define MESH_CT_INGRESS_RETURN 5   /* on a backend's node: task -> client of another node's published port (lib/clientip.h) */

/* Value of mesh_ct: the translation for packets matching the key. */
struct mesh_ct {
	__be32 saddr;              /* new source address */
	__be32 daddr;              /* new destination address */
	__be16 sport;              /* new source port */
	__be16 dport;              /* new destination port */
	__u32 backend_id;          /* the flow's backend (user space sweeps by it) */
	__u32 svc_id;              /* counter slot */
	__u32 ifindex;             /* where replies leave (the interface the client came in on) */
	__u8 dmac[6];              /* L2 destination after translation (backend or client MAC) */
	__u8 pad[2];
	__u32 flags;               /* MESH_CTF_* */
	__u32 pad2;
	__u64 last_seen;           /* bpf_ktime_get_ns() when last refreshed (coarse, 1 s) */
};
#define MESH_CTF_LOCAL 1u          /* the backend runs on this node */
#define MESH_CTF_HAIRPIN 2u        /* a task's VIP flow to itself: source is the VIP, sent back out its veth */
#define MESH_CTF_SYN_ONLY 4u       /* a published-port TCP flow begun by a SYN whose reply is not seen yet */
#define MESH_CTF_CLOSING 8u        /* a published-port TCP flow that saw a FIN or a RST */
#define MESH_CTF_NATIVE 16u        /* a return entry whose node took the request on a native ingress: replies go out of the underlay to its MAC */
/* Idle timeouts of published-port TCP flows by state (established ones: mesh_config's tcp_timeout_ns). */
#define MESH_CT_SYN_TIMEOUT_SEC 5
#define MESH_CT_CLOSING_TIMEOUT_SEC 10

/* Key of mesh_frags (value: the struct mesh_ct its first fragment was translated with,
 * last_seen = when): one fragmented datagram as it arrives, in one direction of a flow. */
struct mesh_frag_key {
	__be32 saddr;
	__be32 daddr;
	__be16 id;                 /* the IP identification */
	__u8 proto;
	__u8 kind;                 /* MESH_CT_* of the translation */
};

/* Per-service counters (per CPU): both directions of every translated packet. */
struct mesh_svc_stats {
	__u64 packets;
	__u64 bytes;
	__u64 conns;               /* flows created (conntrack misses that picked a backend) */
};

/* ---- Native routing (lib/native.h): networks whose task packets cross nodes unencapsulated ---- */
#define MESH_MAX_NATIVE 16384      /* addresses on natively routed networks (mesh_native) */

/* Value of mesh_native (key: an address on a natively routed network, __be32): where it is. */
struct mesh_native {
	__u32 vni;                 /* its network: packets cross only between addresses of one network */
	__u32 ifindex;             /* a local task: the host side of its veth; 0 otherwise */
	__be32 node;               /* a remote address: the underlay address of its node; 0 otherwise */
	__u8 mac[6];               /* a local task: its MAC (L2 destination on delivery) */
	__u8 gw_mac[6];            /* a local task: its gateway's MAC (L2 source on delivery) */
	__u32 flags;               /* MESH_NATIVE_* */
};
#define MESH_NATIVE_LOCAL 1u       /* a task on this node: packets from the underlay are handed to its veth */
#define MESH_NATIVE_DIRECT 2u      /* remote, its node on-link: a task's packet to it leaves unencapsulated */

/* Key of mesh_ingress_tasks (value: __u32, the host side of the task's veth): a local task's
 * MAC on the ingress network. A frame for it out of the ingress VXLAN device is handed to that
 * veth by tc_bridge_in, not through the ingress bridge (lib/deliver.h). */
struct mesh_mac_key {
	__u8 mac[6];
	__u8 pad[2];
};
/* mesh_node_macs (key: struct mesh_mac_key, value: __be32, the node's underlay address): the
 * cluster's other nodes by their underlay MAC, from this node's neighbour table. On a natively
 * routed ingress a client's packet that another node took reaches a local task only from one of
 * these MACs (lib/native.h), as VXLAN is accepted only from the nodes' addresses. */

/* ---- Socket-level balancing (sock_lb.c): cgroup connect4/sendmsg4/recvmsg4/getpeername4 ---- */
#define MESH_SOCK_REV_SIZE 65536   /* reverse entries: (socket, backend) -> what was dialled */
#define MESH_SOCK_MAX_NETNS 4096   /* task network namespaces whose sockets reach VIPs */
#define MESH_SOCK_MAX_NETS 8       /* networks looked up per task namespace */

/* Settings of the socket programs, the single entry of sock_lb_config. */
struct mesh_sock_config {
	__u64 netns_cookie;        /* the node's network namespace: the only one whose sockets reach published ports */
	__u32 flags;               /* MESH_SOCK_* */
	__u32 pad;
};
#define MESH_SOCK_READY 1u         /* user space wrote this entry */

/* Value of sock_lb_netns (key: a task's netns cookie): the networks its VIPs are looked up on. */
struct mesh_sock_netns {
	__u32 vnis[MESH_SOCK_MAX_NETS];
	__u32 count;               /* vnis used, at most MESH_SOCK_MAX_NETS */
	__u32 pad;
};

/* Key of sock_lb_rev: one socket and the backend it was sent to. */
struct mesh_sock_rev_key {
	__u64 cookie;              /* bpf_get_socket_cookie() */
	__be32 addr;               /* backend address */
	__be16 port;               /* backend port */
	__u8 pad[2];
};

/* Value of sock_lb_rev: the address the application dialled. */
struct mesh_sock_rev {
	__be32 addr;
	__be16 port;
	__u8 pad[2];
};

/* Per-service counters of the socket path (per CPU): translations, not packets. */
struct mesh_sock_stats {
	__u64 connects;            /* connect() translated (TCP and connected UDP) */
	__u64 sendmsgs;            /* unconnected UDP datagrams translated */
};

/* ---- Egress (lib/egress.h): tasks' packets to addresses outside the cluster, source-NATed to
 * the node's underlay address by tc_task_in, their replies reversed by tc_underlay_in ---- */
#define MESH_CFG_EGRESS 0x100u     /* mesh_overlay_nets is filled: tasks may reach the outside */
#define MESH_MAX_OVERLAY_NETS 4096 /* overlay subnets (mesh_overlay_nets) */
#define MESH_EGRESS_CT_SIZE 65536  /* egress conntrack entries (both directions count) */
/* Source ports (and ICMP echo ids) of egress flows: above Linux's default ephemeral range
 * (32768-60999), so the node's own sockets never hold one; a published port in it is skipped. */
#define MESH_EGRESS_PORT_LOW 61000
#define MESH_CT_EGRESS 0x10        /* task -> outside (key of mesh_egress_ct) */
#define MESH_CT_EGRESS_REPLY 0x11  /* outside -> node underlay address:egress port */
#define MESH_CT_EGRESS_INBOUND 0x12 /* task -> outside, answering a flow begun outside */

/* Key of mesh_overlay_nets (value: the network's VNI): a subnet, its address masked. */
struct mesh_net_key {
	__u32 prefixlen;
	__be32 addr;
};

#endif /* MESH_ABI_H */
