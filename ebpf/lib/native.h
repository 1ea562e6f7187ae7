/* native.h: native routing (issue 19): task packets of a network created with
 * `--opt routing=native` cross between nodes without encapsulation.
 *
 * mesh_native holds every address of such a network that this node deals with: its local tasks
 * (their veth, MAC and gateway MAC) and the remote tasks and nodes (their node's underlay
 * address; DIRECT when that node is on-link, so that a plain IPv4 packet reaches it).
 *  - native_from_task (tc_task_in): a task's packet to a DIRECT address of its own network
 *    leaves by the underlay interface toward that address's node; bpf_redirect_neigh writes
 *    the L2 header from the node's neighbour entry (ARP on the underlay).
 *  - native_to_task (tc_underlay_in; in xdp mode XDP passes such packets to tc): a packet from
 *    the underlay for a local task is handed to the task's veth only if its source is a remote
 *    address of the same network; anything else for a local task is dropped, so a task on one
 *    network cannot reach a task on another, and no stranger on the underlay reaches a task.
 *    But a published-port client's packet (any source) to a local ingress task is taken from
 *    another node of the cluster (by its MAC, mesh_node_macs, as VXLAN is taken only from the
 *    nodes' addresses), and leaves a return entry, so that the task's replies go back to that
 *    node out of the underlay (lib/clientip.h): the task sees the client's address.
 * The routing mesh on a natively routed `ingress` (its addresses are in the table then): a flow
 * to a remote backend is sent to the backend's node as it is once translated (DNAT only;
 * native_node, native_redirect in tc_underlay_in), and the backend's replies, which its node
 * sends back to this node (to the client, or to this node's ingress address where SNATed), are
 * taken on the underlay by tc_underlay_in as tc_bridge_in takes them from the bridge.
 * In xdp mode xdp_mesh does the same for published ports (native_node: the translated frame
 * gets the backend node's MAC and leaves by XDP_TX; a reply is reversed and sent back).
 * Everything else gets NATIVE_PASS and goes on as before (the VXLAN path). The rest is tc
 * only: it runs on skbs (GSO packets are redirected whole). */
#ifndef MESH_NATIVE_H
#define MESH_NATIVE_H

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "ctx.h"
#include "maps.h"
#include "parse.h"

#ifndef AF_INET
#define AF_INET 2
#endif

/* Not a native packet: the caller goes on as if native routing did not exist. */
#define NATIVE_PASS -1

/* The node of daddr if it is a DIRECT address of network vni (reached unencapsulated), else 0. */
static __always_inline __be32 native_node(__u32 vni, __be32 daddr)
{
	struct mesh_native *n = bpf_map_lookup_elem(&mesh_native, &daddr);

	if (!n || n->vni != vni || !(n->flags & MESH_NATIVE_DIRECT))
		return 0;
	return n->node;
}

/* Whether p (from the underlay) may be a remote backend's reply of a published-port flow of
 * this node: to this node's ingress address (SNATed), or, on a native ingress, to the client
 * from a remote ingress address. Packets to the underlay address (clients') never are. */
static __always_inline int native_maybe_reply(const struct mesh_config *cfg, const struct pkt *p)
{
	return p->daddr == cfg->ingress_addr ||
	       (p->daddr != cfg->underlay_addr && native_node(cfg->ingress_vni, p->saddr));
}

#ifndef MESH_XDP
/* The IPv4 header of skb's packet, pulled into the linear part; 0 if it has none. */
static __always_inline struct iphdr *native_ip(struct __sk_buff *skb)
{
	struct ethhdr *eth;
	struct iphdr *ip;

	if (skb->protocol != bpf_htons(ETH_P_IP))
		return 0;
	bpf_skb_pull_data(skb, sizeof(*eth) + sizeof(*ip));
	eth = ctx_data(skb);
	ip = (void *)(eth + 1);
	if ((void *)(ip + 1) > ctx_data_end(skb))
		return 0;
	return ip;
}

/* A task's packet (the task is on network vni): out of the underlay if its destination is a
 * DIRECT address of the same network; NATIVE_PASS otherwise. */
static __always_inline int native_from_task(struct __sk_buff *skb, const struct mesh_config *cfg, __u32 vni)
{
	struct bpf_redir_neigh nh = { .nh_family = AF_INET };
	struct iphdr *ip = native_ip(skb);
	struct mesh_native *n;
	__be32 daddr;

	if (!ip || !cfg->underlay_ifindex)
		return NATIVE_PASS;
	daddr = ip->daddr;
	n = bpf_map_lookup_elem(&mesh_native, &daddr);
	if (!n || n->vni != vni || !(n->flags & MESH_NATIVE_DIRECT))
		return NATIVE_PASS;
	nh.ipv4_nh = n->node;
	return bpf_redirect_neigh(cfg->underlay_ifindex, &nh, sizeof(nh), 0);
}

/* Sends skb out of the underlay to node (L2 from the node's neighbour entry). */
static __always_inline int native_redirect(const struct mesh_config *cfg, __be32 node)
{
	struct bpf_redir_neigh nh = { .nh_family = AF_INET, .ipv4_nh = node };

	return bpf_redirect_neigh(cfg->underlay_ifindex, &nh, sizeof(nh), 0);
}

/* Hands skb to the local task `to` (its veth, with its MACs). */
static __always_inline int native_deliver(struct __sk_buff *skb, const struct mesh_native *to)
{
	if (ctx_set_l2(skb, to->mac, to->gw_mac))
		return TC_ACT_SHOT;
	return bpf_redirect(to->ifindex, 0);
}

/* Whether skb's frame was sent by another node of the cluster (its source MAC is in
 * mesh_node_macs). */
static __always_inline int native_from_node(struct __sk_buff *skb)
{
	struct mesh_mac_key key = {};
	struct ethhdr *eth = ctx_data(skb);

	if ((void *)(eth + 1) > ctx_data_end(skb))
		return 0;
	__builtin_memcpy(key.mac, eth->h_source, ETH_ALEN);
	return bpf_map_lookup_elem(&mesh_node_macs, &key) != 0;
}

/* A packet from the underlay: to its task's veth if it is for a local task and comes from a
 * remote address of the task's network, dropped if it is for a local task otherwise,
 * NATIVE_PASS if it is not for a local task of a native network. One exception: a packet for a
 * local task of the ingress network from an address outside the cluster that another node sent
 * (its MAC in mesh_node_macs) is a published-port client's packet that node took and only
 * DNATed: NATIVE_CLIENT, with the task in *to, for the caller to record the way back
 * (lib/clientip.h) and deliver. */
#define NATIVE_CLIENT -2
static __always_inline int native_to_task(struct __sk_buff *skb, const struct mesh_config *cfg,
					  struct mesh_native *to)
{
	struct iphdr *ip = native_ip(skb);
	struct mesh_native *dst, *src;
	__be32 saddr, daddr;

	if (!ip)
		return NATIVE_PASS;
	daddr = ip->daddr;
	saddr = ip->saddr;
	dst = bpf_map_lookup_elem(&mesh_native, &daddr);
	if (!dst || !(dst->flags & MESH_NATIVE_LOCAL))
		return NATIVE_PASS;
	src = bpf_map_lookup_elem(&mesh_native, &saddr);
	if (!src && dst->vni == cfg->ingress_vni && native_from_node(skb)) {
		*to = *dst;
		return NATIVE_CLIENT;
	}
	if (!src || src->vni != dst->vni || (src->flags & MESH_NATIVE_LOCAL))
		return TC_ACT_SHOT;
	return native_deliver(skb, dst);
}

#endif /* !MESH_XDP */

#endif
