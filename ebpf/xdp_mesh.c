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
 * - Everything else: XDP_PASS untouched (ICMP, fragments, IP options, ARP, IPv6, short frames). */
#define MESH_XDP
#include "lib/lb.h"
#include "lib/encap.h"
#include "lib/reject.h"

static __always_inline int vxlan_reply(struct xdp_md *ctx, const struct mesh_config *cfg)
{
	void *data = ctx_data(ctx), *end = ctx_data_end(ctx);
	struct vxlanhdr *vx = data + sizeof(struct ethhdr) + sizeof(struct iphdr) + sizeof(struct udphdr);
	struct mesh_ct ct;
	struct pkt in;

	if ((void *)(vx + 1) > end)
		return XDP_PASS;
	if (!(vx->flags & bpf_htonl(VXLAN_FLAG_VNI)) || vx->vni != bpf_htonl(cfg->ingress_vni << 8))
		return XDP_PASS;
	if (parse_pkt(ctx, VXLAN_OUTER_LEN, &in) != PARSE_OK || in.daddr != cfg->ingress_addr)
		return XDP_PASS;
	if (lb_reply(cfg, &in, MESH_CT_INGRESS_REPLY, &ct) != LB_FORWARD)
		return XDP_PASS;
	if (ctx_nat(ctx, VXLAN_OUTER_LEN + sizeof(struct ethhdr), in.proto, in.saddr, ct.saddr,
		    in.daddr, ct.daddr, in.sport, ct.sport, in.dport, ct.dport))
		return XDP_DROP;
	if (bpf_xdp_adjust_head(ctx, (int)VXLAN_OUTER_LEN))
		return XDP_DROP;
	if (ctx_set_l2(ctx, ct.dmac, cfg->underlay_mac))
		return XDP_DROP;
	mesh_count(ct.svc_id, ctx_len(ctx), 0);
	if (ct.ifindex == ctx->ingress_ifindex)
		return XDP_TX;
	return bpf_redirect(ct.ifindex, 0);
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

	/* Until the ingress bridge is attached there is no SNAT source: nothing is published. */
	if (!cfg || !cfg->ingress_bridge_ifindex || parse_pkt(ctx, 0, &p) != PARSE_OK)
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
