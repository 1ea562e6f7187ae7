/* xdp_mesh.c: the routing mesh at XDP on the underlay interface (--datapath xdp).
 *
 * - A published port whose backend is on another node: translated (DNAT to the task, SNAT to
 *   this node's ingress address), encapsulated in VXLAN to the backend's node, XDP_TX.
 * - A published port whose backend is local, or whose remote node has no resolved neighbour
 *   yet: the flow is created here and the frame passes; tc_underlay_in (tc_lb.c) finds the flow
 *   and redirects it into the ingress bridge (XDP cannot redirect into a bridge).
 * - A VXLAN reply of such a flow (ingress VNI, inner destination = our ingress address):
 *   reversed and decapsulated here, sent back to the client.
 * - A published TCP port with no backend: answered with a RST; UDP: dropped.
 * - ICMP errors of those flows (lib/icmp.h): from the client side, translated and encapsulated
 *   like the flow (a local backend's pass to tc_underlay_in); from a remote backend inside
 *   VXLAN, translated, decapsulated and sent back to the client like a reply.
 * - Everything else: XDP_PASS untouched (other ICMP, fragments, IP options, ARP, IPv6, short
 *   frames). */
#define MESH_XDP
#include "lib/lb.h"
#include "lib/encap.h"
#include "lib/icmp.h"
#include "lib/reject.h"

/* The ICMP error at l3off (parsed as PARSE_ICMP) if it answers a flow of kind `kind`:
 * translated back into *ct's direction (LB_FORWARD), not ours (LB_PASS), or broken (LB_REJECT).
 * A client-side error of a flow with a local backend is left to tc_underlay_in (LB_PASS). */
static __always_inline int xdp_icmp(struct xdp_md *ctx, const struct mesh_config *cfg, __u32 l3off, __u8 kind,
				    struct mesh_ct *ct, struct pkt *inner)
{
	if (icmp_quote(ctx, l3off, inner) || icmp_flow(cfg, inner, kind, ct) != LB_FORWARD)
		return LB_PASS;
	if (kind == MESH_CT_INGRESS && (ct->flags & MESH_CTF_LOCAL))
		return LB_PASS;
	return LB_FORWARD;
}

static __always_inline int vxlan_reply(struct xdp_md *ctx, const struct mesh_config *cfg)
{
	void *data = ctx_data(ctx), *end = ctx_data_end(ctx);
	struct vxlanhdr *vx = data + sizeof(struct ethhdr) + sizeof(struct iphdr) + sizeof(struct udphdr);
	struct mesh_ct ct;
	struct pkt in, quote;
	int kind;

	if ((void *)(vx + 1) > end)
		return XDP_PASS;
	if (!(vx->flags & bpf_htonl(VXLAN_FLAG_VNI)) || vx->vni != bpf_htonl(cfg->ingress_vni << 8))
		return XDP_PASS;
	kind = parse_pkt(ctx, VXLAN_OUTER_LEN, &in);
	if ((kind != PARSE_OK && kind != PARSE_ICMP) || in.daddr != cfg->ingress_addr)
		return XDP_PASS;
	if (kind == PARSE_ICMP) {
		if (xdp_icmp(ctx, cfg, VXLAN_OUTER_LEN + sizeof(struct ethhdr), MESH_CT_INGRESS_REPLY, &ct, &quote) !=
		    LB_FORWARD)
			return XDP_PASS;
		if (icmp_nat(ctx, VXLAN_OUTER_LEN + sizeof(struct ethhdr), &quote, &ct))
			return XDP_DROP;
	} else {
		if (lb_reply(cfg, &in, MESH_CT_INGRESS_REPLY, &ct) != LB_FORWARD)
			return XDP_PASS;
		if (ctx_nat(ctx, VXLAN_OUTER_LEN + sizeof(struct ethhdr), in.proto, in.saddr, ct.saddr,
			    in.daddr, ct.daddr, in.sport, ct.sport, in.dport, ct.dport))
			return XDP_DROP;
	}
	if (bpf_xdp_adjust_head(ctx, (int)VXLAN_OUTER_LEN))
		return XDP_DROP;
	if (ctx_set_l2(ctx, ct.dmac, cfg->underlay_mac))
		return XDP_DROP;
	mesh_count(ct.svc_id, ctx_len(ctx), 0);
	if (ct.ifindex == ctx->ingress_ifindex)
		return XDP_TX;
	return bpf_redirect(ct.ifindex, 0);
}

/* A client-side ICMP error (p) of a published-port flow whose backend is remote: translated and
 * encapsulated to the backend's node like the flow's packets. */
static __always_inline int xdp_icmp_ingress(struct xdp_md *ctx, const struct mesh_config *cfg, const struct pkt *p)
{
	__u8 smac[ETH_ALEN], dmac[ETH_ALEN];
	struct mesh_backend *be;
	struct mesh_ct ct;
	struct pkt quote;
	__u32 id;

	if (p->daddr != cfg->underlay_addr ||
	    xdp_icmp(ctx, cfg, sizeof(struct ethhdr), MESH_CT_INGRESS, &ct, &quote) != LB_FORWARD)
		return XDP_PASS;
	id = ct.backend_id;
	be = bpf_map_lookup_elem(&mesh_backends, &id);
	if (!be || xdp_route_to(ctx, cfg->underlay_addr, be->vtep, smac, dmac))
		return XDP_PASS;
	if (icmp_nat(ctx, sizeof(struct ethhdr), &quote, &ct) || ctx_set_l2(ctx, ct.dmac, cfg->bridge_mac))
		return XDP_DROP;
	mesh_count(ct.svc_id, ctx_len(ctx), 0);
	if (xdp_vxlan_push(ctx, cfg->underlay_addr, be->vtep, smac, dmac, cfg->ingress_vni, flow_hash(&quote)))
		return XDP_DROP;
	return XDP_TX;
}

SEC("xdp")
int xdp_mesh(struct xdp_md *ctx)
{
	struct mesh_config *cfg = mesh_cfg();
	struct mesh_backend *be;
	__u8 smac[ETH_ALEN], dmac[ETH_ALEN];
	struct mesh_ct ct;
	struct pkt p;
	__u32 id;
	int kind;

	/* Until the ingress bridge is attached there is no SNAT source: nothing is published. */
	if (!cfg || !cfg->ingress_bridge_ifindex)
		return XDP_PASS;
	kind = parse_pkt(ctx, 0, &p);
	if (kind == PARSE_ICMP)
		return xdp_icmp_ingress(ctx, cfg, &p);
	if (kind != PARSE_OK)
		return XDP_PASS;
	if (p.proto == IPPROTO_UDP && p.dport == bpf_htons(MESH_VXLAN_PORT) && p.daddr == cfg->underlay_addr)
		return vxlan_reply(ctx, cfg);

	switch (lb_ingress(cfg, &p, ctx->ingress_ifindex, &ct)) {
	case LB_PASS:
		return XDP_PASS;
	case LB_REJECT:
		if (p.proto == IPPROTO_TCP && xdp_tcp_rst(ctx, &p) == 0)
			return XDP_TX;
		return XDP_DROP;
	}
	if (ct.flags & MESH_CTF_LOCAL)
		return XDP_PASS;
	id = ct.backend_id;
	be = bpf_map_lookup_elem(&mesh_backends, &id);
	if (!be || xdp_route_to(ctx, cfg->underlay_addr, be->vtep, smac, dmac))
		return XDP_PASS;
	if (ctx_nat(ctx, sizeof(struct ethhdr), p.proto, p.saddr, ct.saddr, p.daddr, ct.daddr,
		    p.sport, ct.sport, p.dport, ct.dport))
		return XDP_DROP;
	if (ctx_set_l2(ctx, ct.dmac, cfg->bridge_mac))
		return XDP_DROP;
	mesh_count(ct.svc_id, ctx_len(ctx), 0);
	if (xdp_vxlan_push(ctx, cfg->underlay_addr, be->vtep, smac, dmac, cfg->ingress_vni, flow_hash(&p)))
		return XDP_DROP;
	return XDP_TX;
}

char LICENSE[] SEC("license") = "GPL";
