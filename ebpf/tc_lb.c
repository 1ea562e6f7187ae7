/* tc_lb.c: the routing mesh's tc (clsact) programs.
 *
 * tc_underlay_in  ingress of the underlay interface: VXLAN from strangers dropped
 *                 (lib/vxlan_guard.h); published ports (both datapaths: in xdp
 *                 mode it finds the flows xdp_mesh made for local backends). Translates and
 *                 redirects to the ingress network's VXLAN device for a remote backend (its
 *                 FDB knows the backend's node; the kernel encapsulates, keeping GSO), or into
 *                 the ingress bridge for a local one.
 * tc_bridge_in    ingress of the ingress bridge and of the ingress VXLAN device: replies of
 *                 published-port flows (to the client, or to the node's ingress address where
 *                 SNATed), reversed and redirected out of the underlay (remote replies never
 *                 cross the bridge); a client's packet from another node to a local task leaves
 *                 a return entry for the task's replies (lib/clientip.h).
 * tc_task_in      ingress of a task veth's host side (traffic from the task): ARP for VIPs
 *                 answered, VIP:port DNATed to a backend (Maglev), then the bridge forwards;
 *                 a task balanced to itself gets its packet back out of its veth, from the VIP
 *                 (hairpin). A task's call to a published port of its own node (its gateway
 *                 routes it here, never through the underlay) is served as tc_underlay_in
 *                 serves a client's (ICMP errors and fragments included), replies coming back
 *                 out of the task's veth. A packet to outside the cluster is source-NATed to
 *                 the node's address and sent out of the underlay (lib/egress.h), whose
 *                 tc_underlay_in reverses the replies into the task's veth.
 * tc_task_out     egress of a task veth's host side (traffic to the task): VIP replies reversed;
 *                 a flow from outside that the node's kernel forwarded is noted, so that the
 *                 task's answers are not taken for egress (lib/egress.h).
 * Each also serves what is related to the flows it translates (lib/related.h): their ICMP
 * errors, translated back (an error from the client side goes where the flow goes, one from the
 * backend side where replies go), and the later fragments of their UDP datagrams.
 * A published port's client keeps its address (lib/clientip.h): a task's replies to it leave
 * the task into tc_task_in, which sends them back through the node that took the request (out
 * of the underlay, or into the ingress VXLAN device toward that node, as tc_bridge_in recorded).
 * Everything not ours is TC_ACT_OK untouched. */
#include "lib/lb.h"
#include "lib/egress.h"
#include "lib/related.h"
#include "lib/clientip.h"
#include "lib/vxlan_guard.h"
#include "lib/native.h"
#include "lib/deliver.h"

#define L4_PULL_LEN (sizeof(struct ethhdr) + sizeof(struct iphdr) + sizeof(struct tcphdr))

/* The ICMP error or later fragment in skb (parsed as `parsed`, p) if it belongs to a flow of
 * kind `kind`: translated into *ct's direction (LB_FORWARD), not ours (LB_PASS), or broken
 * (LB_REJECT). */
static __always_inline int tc_related(struct __sk_buff *skb, const struct mesh_config *cfg, int parsed,
				      const struct pkt *p, __u8 kind, struct mesh_ct *ct)
{
	struct pkt quote;

	if (parsed == PARSE_ICMP)
		ctx_pull(skb, ICMP_PULL_LEN);
	if (related_flow(skb, cfg, sizeof(struct ethhdr), parsed, p, kind, ct, &quote) != LB_FORWARD)
		return LB_PASS;
	if (related_nat(skb, sizeof(struct ethhdr), parsed, p, &quote, ct))
		return LB_REJECT;
	mesh_count(ct->svc_id, skb->len, 0);
	return LB_FORWARD;
}

/* The verdict of tc_related's answer lb that is not LB_FORWARD. */
#define RELATED_NOT_FORWARDED(lb) ((lb) == LB_PASS ? TC_ACT_OK : TC_ACT_SHOT)

/* Where tc_underlay_in sends a flow's packets: a remote backend straight to the VXLAN device,
 * whose FDB knows the backend's node (skipping the bridge); a local one through the bridge. */
static __always_inline __u32 underlay_target(const struct mesh_config *cfg, const struct mesh_ct *ct)
{
	return (ct->flags & MESH_CTF_LOCAL) || !cfg->ingress_vxlan_ifindex ? cfg->ingress_bridge_ifindex :
									     cfg->ingress_vxlan_ifindex;
}

/* Sends a packet translated by tc_related on with the L2 addresses and to the interface given. */
static __always_inline int related_redirect(struct __sk_buff *skb, const __u8 *dmac, const __u8 *smac,
					    __u32 ifindex)
{
	if (ctx_set_l2(skb, dmac, smac))
		return TC_ACT_SHOT;
	return bpf_redirect(ifindex, 0);
}

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
	struct mesh_native task;
	struct mesh_ct ct;
	__be32 native;
	struct pkt p;
	int parsed, lb;

	if (!cfg)
		return TC_ACT_OK;
	lb = egress_to_task(skb, cfg); /* an egress flow's reply (never VXLAN: not to port 4789) */
	if (lb != EGRESS_NOT_OURS)
		return lb;
	if (vxlan_from_stranger(skb, cfg))
		return TC_ACT_SHOT;
	lb = native_to_task(skb, cfg, &task);
	if (lb == NATIVE_CLIENT) {
		/* A published-port client's packet another node took (native ingress): the task's
		 * replies go back to that node (lib/clientip.h). */
		ctx_pull(skb, L4_PULL_LEN);
		if (parse_pkt(skb, 0, &p) == PARSE_OK)
			clientip_record_return(cfg, &p, skb->ifindex);
		return native_deliver(skb, &task);
	}
	if (lb != NATIVE_PASS)
		return lb;
	if (!cfg->ingress_bridge_ifindex)
		return TC_ACT_OK;
	ctx_pull(skb, L4_PULL_LEN);
	parsed = parse_pkt(skb, 0, &p);
	if (parsed != PARSE_OK) {
		if (parsed != PARSE_ICMP && parsed != PARSE_FRAG)
			return TC_ACT_OK;
		if (p.daddr != cfg->underlay_addr) {
			/* Native ingress: a remote backend's error about a client's packet (or the rest
			 * of its reply), sent back here by its node: on to the client. */
			lb = tc_related(skb, cfg, parsed, &p, MESH_CT_INGRESS_REPLY, &ct);
			if (lb != LB_FORWARD)
				return RELATED_NOT_FORWARDED(lb);
			return related_redirect(skb, ct.dmac, cfg->underlay_mac, ct.ifindex);
		}
		lb = tc_related(skb, cfg, parsed, &p, MESH_CT_INGRESS, &ct);
		if (lb != LB_FORWARD)
			return RELATED_NOT_FORWARDED(lb);
		return related_redirect(skb, ct.dmac, cfg->bridge_mac, underlay_target(cfg, &ct));
	}
	/* Native ingress: a remote backend's reply, sent back to this node by its own (to the
	 * client, or to this node's ingress address where SNATed). */
	if (native_maybe_reply(cfg, &p) && lb_reply(cfg, &p, MESH_CT_INGRESS_REPLY, &ct) == LB_FORWARD) {
		if (p.frag)
			frag_record(&p, MESH_CT_INGRESS_REPLY, &ct);
		return redirect_translated(skb, &p, &ct, cfg->underlay_mac, ct.ifindex);
	}
	switch (lb_ingress(cfg, &p, skb->ifindex, &ct)) {
	case LB_PASS:
		return TC_ACT_OK;
	case LB_REJECT:
		/* TCP: the node's stack answers RST (nothing listens on a published port). */
		return p.proto == IPPROTO_TCP ? TC_ACT_OK : TC_ACT_SHOT;
	}
	if (p.frag)
		frag_record(&p, MESH_CT_INGRESS, &ct);
	/* Native ingress: a remote backend's node is sent the packet as it is once translated. */
	native = ct.flags & MESH_CTF_LOCAL ? 0 : native_node(cfg->ingress_vni, ct.daddr);
	if (native) {
		/* Translated as for any backend; the neighbour redirect then replaces the plain one. */
		lb = redirect_translated(skb, &p, &ct, cfg->bridge_mac, cfg->underlay_ifindex);
		return lb == TC_ACT_SHOT ? lb : native_redirect(cfg, native);
	}
	return redirect_translated(skb, &p, &ct, cfg->bridge_mac, underlay_target(cfg, &ct));
}

SEC("classifier")
int tc_bridge_in(struct __sk_buff *skb)
{
	struct mesh_config *cfg = mesh_cfg();
	struct mesh_ct ct;
	struct pkt p;
	int parsed, lb;

	if (!cfg)
		return TC_ACT_OK;
	ctx_pull(skb, L4_PULL_LEN);
	parsed = parse_pkt(skb, 0, &p);
	/* Replies come to the node's ingress address (SNAT) or, from a remote task, to the client
	 * itself (lib/clientip.h). */
	if (parsed != PARSE_OK && parsed != PARSE_ICMP && parsed != PARSE_FRAG)
		return TC_ACT_OK;
	if (parsed != PARSE_OK) {
		lb = tc_related(skb, cfg, parsed, &p, MESH_CT_INGRESS_REPLY, &ct);
		if (lb != LB_FORWARD)
			return RELATED_NOT_FORWARDED(lb);
		return related_redirect(skb, ct.dmac, cfg->underlay_mac, ct.ifindex);
	}
	if (lb_reply(cfg, &p, MESH_CT_INGRESS_REPLY, &ct) != LB_FORWARD) {
		clientip_record_return(cfg, &p, skb->ifindex);
		return deliver_to_ingress_task(skb, cfg);
	}
	if (p.frag)
		frag_record(&p, MESH_CT_INGRESS_REPLY, &ct);
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

/* A task's packet to a published port of this node (p): balanced, translated and sent like a
 * client's from the underlay; the reverse entry sends replies back out of the task's veth. */
static __always_inline int task_to_published_port(struct __sk_buff *skb, const struct mesh_config *cfg,
						  const struct pkt *p)
{
	struct mesh_ct ct;

	if (!cfg->ingress_bridge_ifindex)
		return TC_ACT_OK;
	switch (lb_ingress_flow(cfg, p, skb->ifindex, 1, &ct)) {
	case LB_PASS:
		return TC_ACT_OK;
	case LB_REJECT:
		/* TCP: the node's stack answers RST (nothing listens on a published port). */
		return p->proto == IPPROTO_TCP ? TC_ACT_OK : TC_ACT_SHOT;
	}
	if (p->frag)
		frag_record(p, MESH_CT_INGRESS, &ct);
	return redirect_translated(skb, p, &ct, cfg->bridge_mac, underlay_target(cfg, &ct));
}

SEC("classifier")
int tc_task_in(struct __sk_buff *skb)
{
	struct mesh_config *cfg = mesh_cfg();
	__u32 ifindex = skb->ifindex;
	struct mesh_iface *ifc;
	struct mesh_ct ct;
	struct pkt p;
	int parsed, lb;

	if (!cfg)
		return TC_ACT_OK;
	ifc = bpf_map_lookup_elem(&mesh_ifaces, &ifindex);
	if (!ifc)
		return TC_ACT_OK;
	lb = native_from_task(skb, cfg, ifc->vni);
	if (lb != NATIVE_PASS)
		return lb;
	ctx_pull(skb, L4_PULL_LEN);
	parsed = parse_pkt(skb, 0, &p);
	switch (parsed) {
	case PARSE_ARP:
		return arp_reply_for_vip(skb, ifc);
	case PARSE_OK:
		break;
	case PARSE_ICMP:
	case PARSE_FRAG:
		/* An error about a reply that came from the VIP (or from a published port of this
		 * node), or the rest of a datagram to it: on to the backend, as the flow goes. */
		if (p.daddr == cfg->underlay_addr) {
			lb = tc_related(skb, cfg, parsed, &p, MESH_CT_INGRESS, &ct);
			if (lb != LB_FORWARD)
				return RELATED_NOT_FORWARDED(lb);
			return related_redirect(skb, ct.dmac, cfg->bridge_mac, underlay_target(cfg, &ct));
		}
		/* About or of a reply to a published port's client (lib/clientip.h). */
		lb = clientip_tc_task_related(skb, cfg, parsed, &p);
		if (lb >= 0)
			return lb;
		lb = tc_related(skb, cfg, parsed, &p, MESH_CT_VIP, &ct);
		if (lb == LB_PASS)
			return egress_from_task(skb, cfg, parsed, &p); /* an echo request may go outside */
		if (lb != LB_FORWARD)
			return RELATED_NOT_FORWARDED(lb);
		return bpf_skb_store_bytes(skb, 0, ct.dmac, ETH_ALEN, 0) ? TC_ACT_SHOT : TC_ACT_OK;
	default:
		return TC_ACT_OK;
	}
	if (p.daddr == cfg->underlay_addr)
		return task_to_published_port(skb, cfg, &p);
	lb = lb_vip(cfg, &p, ifc->vni, &ct);
	if (lb == LB_PASS) {
		/* Not a VIP: maybe a reply to a published port's client (lib/clientip.h). */
		int back = clientip_tc_task_reply(skb, cfg, &p);

		if (back >= 0)
			return back;
	}
	switch (lb) {
	case LB_PASS:
		return egress_from_task(skb, cfg, parsed, &p); /* outside the cluster, or untouched */
	case LB_REJECT:
		return TC_ACT_SHOT;
	}
	if (p.frag)
		frag_record(&p, MESH_CT_VIP, &ct);
	if (ct.flags & MESH_CTF_HAIRPIN)
		return redirect_translated(skb, &p, &ct, ifc->mac, skb->ifindex);
	/* The source stays the task's; the bridge forwards by the backend's MAC. */
	if (ctx_nat(skb, sizeof(struct ethhdr), p.proto, p.saddr, ct.saddr, p.daddr, ct.daddr,
		    p.sport, ct.sport, p.dport, ct.dport) ||
	    bpf_skb_store_bytes(skb, 0, ct.dmac, ETH_ALEN, 0))
		return TC_ACT_SHOT;
	mesh_count(ct.svc_id, skb->len, 0);
	/* A backend on another node of a native network: straight out of the underlay. */
	lb = native_from_task(skb, cfg, ifc->vni);
	return lb == NATIVE_PASS ? TC_ACT_OK : lb;
}

SEC("classifier")
int tc_task_out(struct __sk_buff *skb)
{
	struct mesh_config *cfg = mesh_cfg();
	struct mesh_ct ct;
	struct pkt p;
	int parsed, lb;

	if (!cfg)
		return TC_ACT_OK;
	ctx_pull(skb, L4_PULL_LEN);
	parsed = parse_pkt(skb, 0, &p);
	switch (parsed) {
	case PARSE_OK:
		break;
	case PARSE_ICMP:
	case PARSE_FRAG:
		/* The backend's error about the task's packet (it reads as sent to the VIP), or the
		 * rest of a reply datagram (it comes from the VIP). */
		lb = tc_related(skb, cfg, parsed, &p, MESH_CT_VIP_REPLY, &ct);
		return lb == LB_FORWARD ? TC_ACT_OK : RELATED_NOT_FORWARDED(lb);
	default:
		return TC_ACT_OK;
	}
	if (lb_reply(cfg, &p, MESH_CT_VIP_REPLY, &ct) != LB_FORWARD) {
		egress_note_inbound(cfg, &p);
		return TC_ACT_OK;
	}
	if (p.frag)
		frag_record(&p, MESH_CT_VIP_REPLY, &ct);
	if (ctx_nat(skb, sizeof(struct ethhdr), p.proto, p.saddr, ct.saddr, p.daddr, ct.daddr,
		    p.sport, ct.sport, p.dport, ct.dport))
		return TC_ACT_SHOT;
	mesh_count(ct.svc_id, skb->len, 0);
	return TC_ACT_OK;
}

char LICENSE[] SEC("license") = "GPL";
