/* encap.h: VXLAN in XDP. The outer header is built in place in front of the frame (outer
 * source = the node's advertised address, never whatever the kernel would pick; destination MAC
 * from the kernel's FIB and neighbour table via bpf_fib_lookup), and stripped from replies. */
#ifndef MESH_ENCAP_H
#define MESH_ENCAP_H

#include "ctx.h"

#ifdef MESH_XDP
#define AF_INET 2

/* The VXLAN header (RFC 7348). */
struct vxlanhdr {
	__be32 flags;
	__be32 vni;
};
#define VXLAN_FLAG_VNI 0x08000000
#define VXLAN_OUTER_LEN (sizeof(struct ethhdr) + sizeof(struct iphdr) + sizeof(struct udphdr) + sizeof(struct vxlanhdr))

/* The route to vtep leaves through the interface the frame came in on: fills MACs. */
static __always_inline int xdp_route_to(struct xdp_md *ctx, __be32 src, __be32 vtep, __u8 *smac, __u8 *dmac)
{
	struct bpf_fib_lookup fib = {};
	int rc;

	fib.family = AF_INET;
	fib.l4_protocol = IPPROTO_UDP;
	fib.tot_len = ctx_len(ctx) + VXLAN_OUTER_LEN - sizeof(struct ethhdr);
	fib.ifindex = ctx->ingress_ifindex;
	fib.ipv4_src = src;
	fib.ipv4_dst = vtep;
	rc = bpf_fib_lookup(ctx, &fib, sizeof(fib), BPF_FIB_LOOKUP_OUTPUT);
	if (rc != BPF_FIB_LKUP_RET_SUCCESS || fib.ifindex != ctx->ingress_ifindex)
		return -1;
	__builtin_memcpy(smac, fib.smac, ETH_ALEN);
	__builtin_memcpy(dmac, fib.dmac, ETH_ALEN);
	return 0;
}

/* Puts an outer Ethernet/IPv4/UDP/VXLAN header in front of the frame. */
static __always_inline int xdp_vxlan_push(struct xdp_md *ctx, __be32 src, __be32 vtep, const __u8 *smac,
					  const __u8 *dmac, __u32 vni, __u32 hash)
{
	__u32 inner_len = ctx_len(ctx);
	void *data, *end;
	struct ethhdr *eth;
	struct iphdr *ip;
	struct udphdr *udp;
	struct vxlanhdr *vx;
	__u32 *w;
	__u64 c;

	if (bpf_xdp_adjust_head(ctx, -(int)VXLAN_OUTER_LEN))
		return -1;
	data = ctx_data(ctx);
	end = ctx_data_end(ctx);
	eth = data;
	ip = (void *)(eth + 1);
	udp = (void *)(ip + 1);
	vx = (void *)(udp + 1);
	if ((void *)(vx + 1) > end)
		return -1;
	__builtin_memcpy(eth->h_dest, dmac, ETH_ALEN);
	__builtin_memcpy(eth->h_source, smac, ETH_ALEN);
	eth->h_proto = bpf_htons(ETH_P_IP);
	ip->version = 4;
	ip->ihl = 5;
	ip->tos = 0;
	ip->tot_len = bpf_htons(inner_len + VXLAN_OUTER_LEN - sizeof(struct ethhdr));
	ip->id = 0;
	ip->frag_off = 0;
	ip->ttl = 64;
	ip->protocol = IPPROTO_UDP;
	ip->check = 0;
	ip->saddr = src;
	ip->daddr = vtep;
	w = (void *)ip;
	c = (__u64)w[0] + w[1] + w[2] + w[3] + w[4];
	ip->check = ~csum_fold(c);
	/* Source port from the flow hash, for ECMP entropy (RFC 7348), in 49152..65535. */
	udp->source = bpf_htons(49152 | (hash & 0x3fff));
	udp->dest = bpf_htons(MESH_VXLAN_PORT);
	udp->len = bpf_htons(inner_len + sizeof(*udp) + sizeof(*vx));
	udp->check = 0;
	vx->flags = bpf_htonl(VXLAN_FLAG_VNI);
	vx->vni = bpf_htonl(vni << 8);
	return 0;
}
#endif

#endif
