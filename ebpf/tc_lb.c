/* tc_lb.c: the routing mesh's tc (clsact) programs.
 *
 * tc_underlay_in  ingress of the underlay interface: published ports (both datapaths: in xdp
 *                 mode it finds the flows xdp_mesh made for local backends). Translates and
 *                 redirects to the ingress network's VXLAN device for a remote backend (its
 *                 FDB knows the backend's node; the kernel encapsulates, keeping GSO), or into
 *                 the ingress bridge for a local one.
 * tc_bridge_in    ingress of the ingress bridge and of the ingress VXLAN device (frames to the
 *                 node's own ingress address): replies of published-port flows, reversed and
 *                 redirected out of the underlay (remote replies never cross the bridge).
 * tc_task_in      ingress of a task veth's host side (traffic from the task): ARP for VIPs
 *                 answered, VIP:port DNATed to a backend (Maglev), then the bridge forwards.
 * tc_task_out     egress of a task veth's host side (traffic to the task): VIP replies reversed.
 * Everything not ours is TC_ACT_OK untouched. */
#include "lib/lb.h"

static __always_inline int redirect_translated(struct __sk_buff *skb, const struct pkt *p,
					       const struct mesh_ct *ct, const __u8 *smac, __u32 ifindex)
{
	if (ctx_nat(skb, sizeof(struct ethhdr), p->proto, p->saddr, ct->saddr, p->daddr, ct->daddr,
		    p->sport, ct->sport, p->dport, ct->dport) ||
	    ctx_set_l2(skb, ct->dmac, smac))
		return TC_ACT_SHOT;
	mesh_count(ct->svc_id, skb->len, 0);
	return bpf_redirect(ifindex, 0);
}

SEC("classifier")
int tc_underlay_in(struct __sk_buff *skb)
{
	struct mesh_config *cfg = mesh_cfg();
	struct mesh_ct ct;
	struct pkt p;

	if (!cfg || !cfg->ingress_bridge_ifindex)
		return TC_ACT_OK;
	ctx_pull(skb, sizeof(struct ethhdr) + sizeof(struct iphdr) + sizeof(struct tcphdr));
	if (parse_pkt(skb, 0, &p) != PARSE_OK)
		return TC_ACT_OK;
	switch (lb_ingress(cfg, &p, skb->ifindex, &ct)) {
	case LB_PASS:
		return TC_ACT_OK;
	case LB_REJECT:
		/* TCP: the node's stack answers RST (nothing listens on a published port). */
		return p.proto == IPPROTO_TCP ? TC_ACT_OK : TC_ACT_SHOT;
	}
	/* A remote backend: straight to the VXLAN device, whose FDB knows the backend's node
	 * (skipping the bridge); a local one through the bridge to the task's veth. */
	return redirect_translated(skb, &p, &ct, cfg->bridge_mac,
				   (ct.flags & MESH_CTF_LOCAL) || !cfg->ingress_vxlan_ifindex ?
					   cfg->ingress_bridge_ifindex : cfg->ingress_vxlan_ifindex);
}

SEC("classifier")
int tc_bridge_in(struct __sk_buff *skb)
{
	struct mesh_config *cfg = mesh_cfg();
	struct mesh_ct ct;
	struct pkt p;

	if (!cfg)
		return TC_ACT_OK;
	ctx_pull(skb, sizeof(struct ethhdr) + sizeof(struct iphdr) + sizeof(struct tcphdr));
	if (parse_pkt(skb, 0, &p) != PARSE_OK || p.daddr != cfg->ingress_addr)
		return TC_ACT_OK;
	if (lb_reply(cfg, &p, MESH_CT_INGRESS_REPLY, &ct) != LB_FORWARD)
		return TC_ACT_OK;
	return redirect_translated(skb, &p, &ct, cfg->underlay_mac, ct.ifindex);
}

/* The ARP request in skb asks for a VIP of network vni: turn it into the reply, in place. */
static __always_inline int arp_reply_for_vip(struct __sk_buff *skb, const struct mesh_iface *ifc)
{
	void *data = ctx_data(skb), *end = ctx_data_end(skb);
	struct ethhdr *eth = data;
	struct arp_eth *arp = (void *)(eth + 1);
	struct mesh_vip_key vk = { .vni = ifc->vni };
	__u8 sha[ETH_ALEN], spa[4], tpa[4];

	if ((void *)(arp + 1) > end)
		return TC_ACT_OK;
	if (arp->hrd != bpf_htons(ARPHRD_ETHER) || arp->pro != bpf_htons(ETH_P_IP) ||
	    arp->hln != ETH_ALEN || arp->pln != 4 || arp->op != bpf_htons(ARPOP_REQUEST))
		return TC_ACT_OK;
	__builtin_memcpy(sha, arp->sha, ETH_ALEN);
	__builtin_memcpy(spa, arp->spa, 4);
	__builtin_memcpy(tpa, arp->tpa, 4);
	__builtin_memcpy(&vk.addr, tpa, 4);
	if (!bpf_map_lookup_elem(&mesh_vips, &vk))
		return TC_ACT_OK;

	__builtin_memcpy(eth->h_dest, sha, ETH_ALEN);
	__builtin_memcpy(eth->h_source, ifc->mac, ETH_ALEN);
	arp->op = bpf_htons(ARPOP_REPLY);
	__builtin_memcpy(arp->sha, ifc->mac, ETH_ALEN);
	__builtin_memcpy(arp->spa, tpa, 4);
	__builtin_memcpy(arp->tha, sha, ETH_ALEN);
	__builtin_memcpy(arp->tpa, spa, 4);
	return bpf_redirect(skb->ifindex, 0);
}

SEC("classifier")
int tc_task_in(struct __sk_buff *skb)
{
	struct mesh_config *cfg = mesh_cfg();
	__u32 ifindex = skb->ifindex;
	struct mesh_iface *ifc;
	struct mesh_ct ct;
	struct pkt p;

	if (!cfg)
		return TC_ACT_OK;
	ifc = bpf_map_lookup_elem(&mesh_ifaces, &ifindex);
	if (!ifc)
		return TC_ACT_OK;
	ctx_pull(skb, sizeof(struct ethhdr) + sizeof(struct iphdr) + sizeof(struct tcphdr));
	switch (parse_pkt(skb, 0, &p)) {
	case PARSE_ARP:
		return arp_reply_for_vip(skb, ifc);
	case PARSE_OK:
		break;
	default:
		return TC_ACT_OK;
	}
	switch (lb_vip(cfg, &p, ifc->vni, &ct)) {
	case LB_PASS:
		return TC_ACT_OK;
	case LB_REJECT:
		return TC_ACT_SHOT;
	}
	/* The source stays the task's; the bridge forwards by the backend's MAC. */
	if (ctx_nat(skb, sizeof(struct ethhdr), p.proto, p.saddr, ct.saddr, p.daddr, ct.daddr,
		    p.sport, ct.sport, p.dport, ct.dport) ||
	    bpf_skb_store_bytes(skb, 0, ct.dmac, ETH_ALEN, 0))
		return TC_ACT_SHOT;
	mesh_count(ct.svc_id, skb->len, 0);
	return TC_ACT_OK;
}

SEC("classifier")
int tc_task_out(struct __sk_buff *skb)
{
	struct mesh_config *cfg = mesh_cfg();
	struct mesh_ct ct;
	struct pkt p;

	if (!cfg)
		return TC_ACT_OK;
	ctx_pull(skb, sizeof(struct ethhdr) + sizeof(struct iphdr) + sizeof(struct tcphdr));
	if (parse_pkt(skb, 0, &p) != PARSE_OK)
		return TC_ACT_OK;
	if (lb_reply(cfg, &p, MESH_CT_VIP_REPLY, &ct) != LB_FORWARD)
		return TC_ACT_OK;
	if (ctx_nat(skb, sizeof(struct ethhdr), p.proto, p.saddr, ct.saddr, p.daddr, ct.daddr,
		    p.sport, ct.sport, p.dport, ct.dport))
		return TC_ACT_SHOT;
	mesh_count(ct.svc_id, skb->len, 0);
	return TC_ACT_OK;
}

char LICENSE[] SEC("license") = "GPL";
