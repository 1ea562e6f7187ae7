/* clientip.h: the client's address kept through ingress (Swarm's moby#25526).
 *
 * A published-port flow is DNATed only (lb_ingress): the task sees the client's address and
 * port, and answers the client itself. That answer leaves the task by its default route, on
 * whichever of its veths that is, and tc_task_in sends it back through the node that took the
 * request:
 * - that node itself (a local backend): the reply entry (MESH_CT_INGRESS_REPLY, task -> client)
 *   reverses the DNAT and the reply leaves by the underlay, as the client's packet came;
 * - another node: the client's packets came out of this node's ingress VXLAN device from that
 *   node's ingress bridge MAC (02:42: + its ingress address, which the device's FDB maps to the
 *   node). tc_bridge_in records it in a return entry (MESH_CT_INGRESS_RETURN, task -> client:
 *   that MAC), and the reply goes back into the VXLAN device to that MAC. There tc_bridge_in
 *   (tc) or vxlan_reply (XDP) finds the reply entry and reverses the DNAT. On a natively routed
 *   ingress the client's packets came in by the underlay from that node's MAC: tc_underlay_in
 *   records it (MESH_CTF_NATIVE) and the reply goes back out of the underlay to that MAC, where
 *   tc_underlay_in or xdp_native_reply reverses the DNAT.
 * A UDP task answering from an unbound socket answers from its address on its first network,
 * which need not be ingress: UDP entries have an any-source twin (source 0,
 * ct_write_any_source), and the reply's source becomes the task's ingress address again.
 * ICMP errors and later fragments of these replies take the same way (related.h).
 * SNAT is kept where a reply straight from the task would not reach the client as its answer:
 * a task calling a published port of its own node, and a client whose reply tuple is taken by
 * another of its flows (the same address and port to two published ports of one backend). */
#ifndef MESH_CLIENTIP_H
#define MESH_CLIENTIP_H

#include "related.h"

#define CLIENTIP_TO_CLIENT 1       /* this node took the request: reverse the DNAT, out of ct->ifindex */
#define CLIENTIP_TO_INGRESS_NODE 2 /* another node took it: to ct->dmac through ct->ifindex (VXLAN) */
/* The backend_id of a return entry: no backend of this node's (user space sweeps by id). */
#define CLIENTIP_NO_BACKEND 0xffffffffu

/* Whether the return entry ct can be used: a native one goes out of the underlay, another
 * into the ingress VXLAN device, which must exist. */
static __always_inline int clientip_return_usable(const struct mesh_config *cfg, const struct mesh_ct *ct)
{
	return (ct->flags & MESH_CTF_NATIVE) || cfg->ingress_vxlan_ifindex;
}

/* The L2 source of a reply sent by way of ct: the underlay's to the client or back to a node
 * of a native ingress, the ingress bridge's into the VXLAN device. */
static __always_inline const __u8 *clientip_smac(const struct mesh_config *cfg, int to_client,
						 const struct mesh_ct *ct)
{
	return to_client || (ct->flags & MESH_CTF_NATIVE) ? cfg->underlay_mac : cfg->bridge_mac;
}

/* The entry of kind `kind` for p (a packet from a task), by its tuple, else (UDP) by its
 * any-source twin. */
static __always_inline struct mesh_ct *clientip_lookup(const struct pkt *p, __u8 kind)
{
	struct mesh_ct_key key;
	struct mesh_ct *ct;

	ct_key_of(&key, p, kind);
	ct = bpf_map_lookup_elem(&mesh_ct, &key);
	if (!ct && p->proto == IPPROTO_UDP) {
		key.saddr = 0;
		ct = bpf_map_lookup_elem(&mesh_ct, &key);
	}
	return ct;
}

/* Whether the reply entry ct (found for p) may be used: fresh, and its backend valid and (when
 * found by the tuple, not by the twin) still at p's source. */
static __always_inline int clientip_reply_alive(const struct mesh_config *cfg, const struct mesh_ct *ct,
						const struct pkt *p, __u64 now)
{
	__u32 id = ct->backend_id;
	struct mesh_backend *be;

	if (ct_stale(cfg, ct, p->proto, now))
		return 0;
	be = bpf_map_lookup_elem(&mesh_backends, &id);
	return be && (be->flags & MESH_BE_VALID) && (be->addr == p->saddr || p->proto == IPPROTO_UDP);
}

/* The way back of p, a packet from a task: CLIENTIP_TO_CLIENT or CLIENTIP_TO_INGRESS_NODE with
 * the translation in *out, or LB_PASS (not a reply to a published port's client). */
static __always_inline int clientip_reply(const struct mesh_config *cfg, const struct pkt *p, struct mesh_ct *out)
{
	__u64 now = bpf_ktime_get_ns();
	struct mesh_ct_key fkey;
	struct mesh_ct *ct;

	ct = clientip_lookup(p, MESH_CT_INGRESS_REPLY);
	if (ct && clientip_reply_alive(cfg, ct, p, now)) {
		if (p->proto == IPPROTO_TCP) {
			/* The forward entry: what the client sent, before translation. */
			ct_key_make(&fkey, ct->daddr, ct->dport, ct->saddr, ct->sport, p->proto, MESH_CT_INGRESS);
			ct_set_state(ct, &fkey, ct_tcp_state(ct->flags, p->tcp_flags, 0));
		}
		/* As in lb_reply: only the client's packets keep a SYN-only flow alive. */
		if (!(ct->flags & MESH_CTF_SYN_ONLY))
			ct_touch(ct, now);
		*out = *ct;
		if (p->frag)
			frag_record(p, MESH_CT_INGRESS_REPLY, out);
		return CLIENTIP_TO_CLIENT;
	}
	ct = clientip_lookup(p, MESH_CT_INGRESS_RETURN);
	if (!ct || !clientip_return_usable(cfg, ct) || ct_stale(cfg, ct, p->proto, now))
		return LB_PASS;
	if (p->proto == IPPROTO_TCP)
		ct->flags = ct_tcp_state(ct->flags, p->tcp_flags, 0);
	if (!(ct->flags & MESH_CTF_SYN_ONLY))
		ct_touch(ct, now);
	*out = *ct;
	if (p->frag)
		frag_record(p, MESH_CT_INGRESS_RETURN, out);
	return CLIENTIP_TO_INGRESS_NODE;
}

/* p came out of the ingress VXLAN device (ifindex) to a local task: a client's packet that
 * another node took. Records (or refreshes) where the task's replies go: back to the node whose
 * bridge MAC sent it. On a native ingress p came in by the underlay (ifindex) from that node's
 * own MAC (native_to_task): the replies go back out of the underlay to it (MESH_CTF_NATIVE). */
static __always_inline void clientip_record_return(const struct mesh_config *cfg, const struct pkt *p,
						   __u32 ifindex)
{
	struct mesh_ct_key key;
	struct mesh_ct *ct, v = {};
	__u32 native = ifindex == cfg->underlay_ifindex ? MESH_CTF_NATIVE : 0;
	__u64 now;
	__u32 flags;

	if (!ifindex || (ifindex != cfg->ingress_vxlan_ifindex && !native) || p->daddr == cfg->ingress_addr)
		return;
	now = bpf_ktime_get_ns();
	if (p->proto == IPPROTO_TCP && (p->tcp_flags & (TCPF_SYN | TCPF_ACK)) == TCPF_SYN) {
		/* A new flow: the client's port may have come through this node itself before, and
		 * that flow's reply entry (looked up first) would send the answers out of here. The
		 * newest SYN decides the way back. */
		ct_key_make(&key, p->daddr, p->dport, p->saddr, p->sport, p->proto, MESH_CT_INGRESS_REPLY);
		bpf_map_delete_elem(&mesh_ct, &key);
	}
	ct_key_make(&key, p->daddr, p->dport, p->saddr, p->sport, p->proto, MESH_CT_INGRESS_RETURN);
	ct = bpf_map_lookup_elem(&mesh_ct, &key);
	if (ct && !ct_stale(cfg, ct, p->proto, now) && !__builtin_memcmp(ct->dmac, p->smac, ETH_ALEN)) {
		flags = p->proto == IPPROTO_TCP ? ct_tcp_state(ct->flags, p->tcp_flags, 1) : ct->flags;
		if (flags == ct->flags && now - ct->last_seen < NS_PER_SEC)
			return;
		ct->flags = flags;
		ct->last_seen = now;
		ct_write_any_source(&key, ct);
		return;
	}
	v.saddr = p->daddr;
	v.daddr = p->saddr;
	v.sport = p->dport;
	v.dport = p->sport;
	v.backend_id = CLIENTIP_NO_BACKEND;
	v.ifindex = ifindex;
	__builtin_memcpy(v.dmac, p->smac, ETH_ALEN);
	/* A bare SYN's entry lives briefly (spoofed SYNs do not fill the table for long). */
	v.flags = native |
		  (p->proto == IPPROTO_TCP && (p->tcp_flags & (TCPF_SYN | TCPF_ACK)) == TCPF_SYN ? MESH_CTF_SYN_ONLY : 0);
	v.last_seen = now;
	if (bpf_map_update_elem(&mesh_ct, &key, &v, BPF_ANY))
		mesh_count_drop(MESH_DROP_CT_FULL, 0);
	ct_write_any_source(&key, &v);
}

#ifndef MESH_XDP
/* tc_task_in's part: p (PARSE_OK) from a task is a reply to a published port's client:
 * translated and redirected. Returns the tc verdict, or -1 when it is not one. */
static __always_inline int clientip_tc_task_reply(struct __sk_buff *skb, const struct mesh_config *cfg,
						  const struct pkt *p)
{
	struct mesh_ct ct;
	int way = clientip_reply(cfg, p, &ct);

	if (way == LB_PASS)
		return -1;
	if (ctx_nat(skb, sizeof(struct ethhdr), p->proto, p->saddr, ct.saddr, p->daddr, ct.daddr, p->sport, ct.sport,
		    p->dport, ct.dport) ||
	    ctx_set_l2(skb, ct.dmac, clientip_smac(cfg, way == CLIENTIP_TO_CLIENT, &ct)))
		return TC_ACT_SHOT;
	if (way == CLIENTIP_TO_CLIENT)
		mesh_count(ct.svc_id, skb->len, 0);
	return bpf_redirect(ct.ifindex, 0);
}

/* tc_task_in's part for an ICMP error or a later fragment p (parsed as `parsed`) from a task,
 * about or of a published-port flow: as the flow's replies go. Returns the tc verdict, or -1
 * when it is not one. */
static __always_inline int clientip_tc_task_related(struct __sk_buff *skb, const struct mesh_config *cfg,
						    int parsed, const struct pkt *p)
{
	const __u32 l3off = sizeof(struct ethhdr);
	struct mesh_ct ct;
	struct pkt quote;
	int to_client = 1;

	if (parsed == PARSE_ICMP)
		ctx_pull(skb, ICMP_PULL_LEN);
	if (related_flow(skb, cfg, l3off, parsed, p, MESH_CT_INGRESS_REPLY, &ct, &quote) != LB_FORWARD) {
		if (related_flow(skb, cfg, l3off, parsed, p, MESH_CT_INGRESS_RETURN, &ct, &quote) != LB_FORWARD ||
		    !clientip_return_usable(cfg, &ct))
			return -1;
		to_client = 0;
	}
	if (related_nat(skb, l3off, parsed, p, &quote, &ct) ||
	    ctx_set_l2(skb, ct.dmac, clientip_smac(cfg, to_client, &ct)))
		return TC_ACT_SHOT;
	if (to_client)
		mesh_count(ct.svc_id, skb->len, 0);
	return bpf_redirect(ct.ifindex, 0);
}
#endif

#endif
