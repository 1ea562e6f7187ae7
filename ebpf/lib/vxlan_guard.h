/* vxlan_guard.h: VXLAN only from the cluster's nodes. The kernel's VXLAN devices take UDP to
 * port 4789 from anyone on the underlay, so a host there could inject frames into any overlay
 * network. The underlay ingress programs (tc_underlay_in, xdp_mesh) drop such a datagram to this
 * node's address unless its outer source is in mesh_nodes, counting it in mesh_drops.
 *
 * Until user space has filled mesh_nodes (MESH_CFG_NODES unset: the node is not in a swarm yet)
 * everything is accepted. The outer IP header may carry options. A later fragment has no UDP
 * header to look at: it passes, and is useless without its first fragment, which is dropped. */
#ifndef MESH_VXLAN_GUARD_H
#define MESH_VXLAN_GUARD_H

#include <linux/udp.h>
#include "ctx.h"
#include "maps.h"

/* Ethernet, the longest IPv4 header (with options), UDP. */
#define VXLAN_GUARD_PULL_LEN (sizeof(struct ethhdr) + 60 + sizeof(struct udphdr))

/* Whether the frame is UDP to this node's VXLAN port from a source that is not a cluster node
 * (and the node list is filled). Counts what it finds foreign. */
static __always_inline int vxlan_from_stranger(CTX *ctx, const struct mesh_config *cfg)
{
	void *data, *end;
	struct ethhdr *eth;
	struct udphdr *udp;
	struct iphdr *ip;
	__be32 saddr;
	__u32 ihl;

	if (!(cfg->flags & MESH_CFG_NODES))
		return 0;
	ctx_pull(ctx, VXLAN_GUARD_PULL_LEN);
	data = ctx_data(ctx);
	end = ctx_data_end(ctx);
	eth = data;
	ip = (void *)(eth + 1);
	if ((void *)(ip + 1) > end || eth->h_proto != bpf_htons(ETH_P_IP) || ip->version != 4)
		return 0;
	if (ip->protocol != IPPROTO_UDP || ip->daddr != cfg->underlay_addr || (ip->frag_off & bpf_htons(IP_OFFSET)))
		return 0;
	ihl = ip->ihl * 4;
	if (ihl < sizeof(*ip))
		return 0;
	udp = (void *)ip + ihl;
	if ((void *)(udp + 1) > end || udp->dest != bpf_htons(MESH_VXLAN_PORT))
		return 0;
	saddr = ip->saddr;
	if (bpf_map_lookup_elem(&mesh_nodes, &saddr))
		return 0;
	mesh_count_drop(MESH_DROP_VXLAN_SOURCE, ctx_len(ctx));
	return 1;
}

#endif
