/* xdp_mesh.c: the routing mesh at XDP on the underlay interface (--datapath xdp).
 *
 * - VXLAN to this node from an address that is not a cluster node: dropped (lib/vxlan_guard.h).
 * - A published port whose backend is on another node: translated (DNAT to the task; the
 *   client's address is kept, lib/clientip.h), encapsulated in VXLAN to the backend's node, XDP_TX.
 * - A published port whose backend is local, or whose remote node has no resolved neighbour
 *   yet, or whose frame would not fit the underlay's MTU once encapsulated: the flow is created
 *   here and the frame passes; tc_underlay_in (tc_lb.c) finds the flow and redirects it into
 *   the ingress bridge (XDP cannot redirect into a bridge) or the VXLAN device (whose path-MTU
 *   check answers "fragmentation needed", or which fragments the outer packet).
 * - A VXLAN reply of such a flow (ingress VNI, inner destination = the client, or our ingress
 *   address where the flow is SNATed): reversed and decapsulated here, sent back to the client.
 * - A published TCP port with no backend: answered with a RST; UDP: dropped.
 * - What is related to those flows (lib/related.h): ICMP errors, translated back, and the later
 *   fragments of their UDP datagrams, go the way of the flow's own packets in each direction.
 * - With ingress routed natively (lib/native.h), the same without VXLAN: the translated frame goes
 *   to the backend's node with its MAC (XDP_TX), and the backend's reply, which its node sends
 *   back here (to the client, or to our ingress address where SNATed), is reversed and sent back.
 * - Everything else: XDP_PASS untouched (other ICMP, TCP fragments, IP options, ARP, IPv6,
 *   short frames). */
#define MESH_XDP
#include "lib/lb.h"
#include "lib/encap.h"
#include "lib/related.h"
#include "lib/reject.h"
#include "lib/vxlan_guard.h"
#include "lib/native.h"

/* Frames up to this size fit any IPv4 link once encapsulated (576: the least every IPv4 host
 * takes): they skip the MTU check (acknowledgements, requests, most of a flow's small packets). */
#define ENCAP_ALWAYS_FITS (sizeof(struct ethhdr) + 576 - VXLAN_OUTER_LEN)

/* Whether the frame, once encapsulated, fits the MTU of the interface it came in on. */
static __always_inline int fits_encapsulated(struct xdp_md *ctx)
{
	__u32 mtu_len = 0;

	if (ctx_len(ctx) <= ENCAP_ALWAYS_FITS)
		return 1;
	return bpf_check_mtu(ctx, 0, &mtu_len, (__s32)VXLAN_OUTER_LEN, 0) == BPF_MTU_CHK_RET_SUCCESS;
}

/* The translated frame of a flow whose backend is remote (ct): to the backend's node inside
 * VXLAN. The caller has translated it (fn called after the checks that may still pass it). */
static __always_inline int xdp_encapsulate(struct xdp_md *ctx, const struct mesh_config *cfg,
					   const struct mesh_ct *ct, const __u8 *smac, const __u8 *dmac,
					   __be32 vtep, __u32 hash)
{
	if (ctx_set_l2(ctx, ct->dmac, cfg->bridge_mac))
		return XDP_DROP;
	mesh_count(ct->svc_id, ctx_len(ctx), 0);
	if (xdp_vxlan_push(ctx, cfg->underlay_addr, vtep, smac, dmac, cfg->ingress_vni, hash))
		return XDP_DROP;
	return XDP_TX;
}

/* Checks before translating a frame of ct's flow for a remote backend: its node's address and
 * route (smac, dmac), and that it fits. Returns 0, or -1 to leave the frame to tc. */
static __always_inline int xdp_remote(struct xdp_md *ctx, const struct mesh_config *cfg, const struct mesh_ct *ct,
				      __u8 *smac, __u8 *dmac, __be32 *vtep)
{
	struct mesh_backend *be;
	__u32 id = ct->backend_id;

	if (ct->flags & MESH_CTF_LOCAL)
		return -1;
	be = bpf_map_lookup_elem(&mesh_backends, &id);
	if (!be || xdp_route_to(ctx, cfg->underlay_addr, be->vtep, smac, dmac) || !fits_encapsulated(ctx))
		return -1;
	*vtep = be->vtep;
	return 0;
}

static __always_inline int vxlan_reply(struct xdp_md *ctx, const struct mesh_config *cfg)
{
	void *data = ctx_data(ctx), *end = ctx_data_end(ctx);
	struct vxlanhdr *vx = data + sizeof(struct ethhdr) + sizeof(struct iphdr) + sizeof(struct udphdr);
	__u32 l3off = VXLAN_OUTER_LEN + sizeof(struct ethhdr);
	struct mesh_ct ct;
	struct pkt in, quote;
	int parsed;

	if ((void *)(vx + 1) > end)
		return XDP_PASS;
	if (!(vx->flags & bpf_htonl(VXLAN_FLAG_VNI)) || vx->vni != bpf_htonl(cfg->ingress_vni << 8))
		return XDP_PASS;
	parsed = parse_pkt(ctx, VXLAN_OUTER_LEN, &in);
	/* To the node's ingress address (SNAT) or to the client itself (lib/clientip.h): the reply
	 * entry says; anything else (a client's packet to a task here) passes to the kernel. */
	if (parsed != PARSE_OK && parsed != PARSE_ICMP && parsed != PARSE_FRAG)
		return XDP_PASS;
	if (parsed != PARSE_OK) {
		if (related_flow(ctx, cfg, l3off, parsed, &in, MESH_CT_INGRESS_REPLY, &ct, &quote) != LB_FORWARD ||
		    ct.ifindex != ctx->ingress_ifindex)
			return XDP_PASS;
		if (related_nat(ctx, l3off, parsed, &in, &quote, &ct))
			return XDP_DROP;
	} else {
		/* A reply to a task of this node that called a published port (tc_task_in) goes
		 * through the kernel's VXLAN device to tc_bridge_in: XDP cannot hand it to a veth. */
		if (lb_reply(cfg, &in, MESH_CT_INGRESS_REPLY, &ct) != LB_FORWARD || ct.ifindex != ctx->ingress_ifindex)
			return XDP_PASS;
		if (in.frag)
			frag_record(&in, MESH_CT_INGRESS_REPLY, &ct);
		if (ctx_nat(ctx, l3off, in.proto, in.saddr, ct.saddr, in.daddr, ct.daddr, in.sport, ct.sport,
			    in.dport, ct.dport))
			return XDP_DROP;
	}
	if (bpf_xdp_adjust_head(ctx, (int)VXLAN_OUTER_LEN))
		return XDP_DROP;
	if (ctx_set_l2(ctx, ct.dmac, cfg->underlay_mac))
		return XDP_DROP;
	mesh_count(ct.svc_id, ctx_len(ctx), 0);
	return XDP_TX;
}

/* A reply of a published-port flow that came back unencapsulated (native ingress, p): reversed
 * and sent back to the client; anything else passes (a reply to a task of this node goes on to
 * tc_underlay_in, which can hand it to the task's veth). */
static __always_inline int xdp_native_reply(struct xdp_md *ctx, const struct mesh_config *cfg,
					    const struct pkt *p)
{
	struct mesh_ct ct;

	if (lb_reply(cfg, p, MESH_CT_INGRESS_REPLY, &ct) != LB_FORWARD || ct.ifindex != ctx->ingress_ifindex)
		return XDP_PASS;
	if (p->frag)
		frag_record(p, MESH_CT_INGRESS_REPLY, &ct);
	if (ctx_nat(ctx, sizeof(struct ethhdr), p->proto, p->saddr, ct.saddr, p->daddr, ct.daddr, p->sport,
		    ct.sport, p->dport, ct.dport) ||
	    ctx_set_l2(ctx, ct.dmac, cfg->underlay_mac))
		return XDP_DROP;
	mesh_count(ct.svc_id, ctx_len(ctx), 0);
	return XDP_TX;
}

/* An ICMP error or a later fragment (p, parsed as `parsed`) of a published-port flow whose
 * backend is remote: translated and encapsulated like the flow's packets (else left to tc). */
static __always_inline int xdp_related_ingress(struct xdp_md *ctx, const struct mesh_config *cfg, int parsed,
					       const struct pkt *p)
{
	__u8 smac[ETH_ALEN], dmac[ETH_ALEN];
	struct mesh_ct ct;
	struct pkt quote;
	__be32 vtep;

	if (p->daddr != cfg->underlay_addr ||
	    related_flow(ctx, cfg, sizeof(struct ethhdr), parsed, p, MESH_CT_INGRESS, &ct, &quote) != LB_FORWARD ||
	    xdp_remote(ctx, cfg, &ct, smac, dmac, &vtep))
		return XDP_PASS;
	if (related_nat(ctx, sizeof(struct ethhdr), parsed, p, &quote, &ct))
		return XDP_DROP;
	return xdp_encapsulate(ctx, cfg, &ct, smac, dmac, vtep, flow_hash(parsed == PARSE_ICMP ? &quote : p));
}

SEC("xdp")
int xdp_mesh(struct xdp_md *ctx)
{
	struct mesh_config *cfg = mesh_cfg();
	__u8 smac[ETH_ALEN], dmac[ETH_ALEN];
	struct mesh_ct ct;
	struct pkt p;
	__be32 vtep;
	int parsed;

	if (!cfg)
		return XDP_PASS;
	if (vxlan_from_stranger(ctx, cfg))
		return XDP_DROP;
	/* Until the ingress bridge is attached there is no SNAT source: nothing is published. */
	if (!cfg->ingress_bridge_ifindex)
		return XDP_PASS;
	parsed = parse_pkt(ctx, 0, &p);
	if (parsed != PARSE_OK)
		return parsed == PARSE_ICMP || parsed == PARSE_FRAG ? xdp_related_ingress(ctx, cfg, parsed, &p) :
								      XDP_PASS;
	if (p.proto == IPPROTO_UDP && p.dport == bpf_htons(MESH_VXLAN_PORT) && p.daddr == cfg->underlay_addr)
		return vxlan_reply(ctx, cfg);

	/* Native ingress: a remote backend's reply, sent back to this node by its own (to the
	 * client, or to this node's ingress address where SNATed): reversed and sent back. */
	if (native_maybe_reply(cfg, &p))
		return xdp_native_reply(ctx, cfg, &p);
	switch (lb_ingress(cfg, &p, ctx->ingress_ifindex, &ct)) {
	case LB_PASS:
		return XDP_PASS;
	case LB_REJECT:
		if (p.proto == IPPROTO_TCP && xdp_tcp_rst(ctx, &p) == 0)
			return XDP_TX;
		return XDP_DROP;
	}
	if (p.frag)
		frag_record(&p, MESH_CT_INGRESS, &ct);
	if (xdp_remote(ctx, cfg, &ct, smac, dmac, &vtep))
		return XDP_PASS;
	if (ctx_nat(ctx, sizeof(struct ethhdr), p.proto, p.saddr, ct.saddr, p.daddr, ct.daddr,
		    p.sport, ct.sport, p.dport, ct.dport))
		return XDP_DROP;
	/* Native ingress: to the backend's node as it is, with its MAC. */
	if (native_node(cfg->ingress_vni, ct.daddr) == vtep) {
		if (ctx_set_l2(ctx, dmac, smac))
			return XDP_DROP;
		mesh_count(ct.svc_id, ctx_len(ctx), 0);
		return XDP_TX;
	}
	return xdp_encapsulate(ctx, cfg, &ct, smac, dmac, vtep, flow_hash(&p));
}

char LICENSE[] SEC("license") = "GPL";
