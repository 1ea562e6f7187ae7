/* egress.h: tasks reach addresses outside the cluster (Swarm's docker_gwbridge, in eBPF, tc only).
 *
 * tc_task_in hands over a task's TCP, UDP or ICMP echo packet that nothing else claimed. If its
 * destination is outside (not in any overlay subnet, mesh_overlay_nets; not a cluster node,
 * mesh_nodes; not this node's address, loopback, multicast or broadcast), it is source-NATed to
 * the node's underlay address and an egress port (MESH_EGRESS_PORT_LOW..65535, or the ICMP echo
 * id), remembered in mesh_egress_ct (both directions), and sent out of the underlay with
 * bpf_redirect_neigh (the kernel's route and neighbour, no forwarding, no netfilter).
 * tc_underlay_in hands over what arrives for the node's address: a reply of such a flow is
 * reversed and redirected into the task's veth. Nothing happens until user space has written the
 * overlay subnets and set MESH_CFG_EGRESS. A "destination unreachable" about an egress flow
 * (port unreachable, fragmentation needed) is translated back to the task as well (icmp.h);
 * fragments, and errors the task sends about the replies, are not (the kernel drops them). */
#ifndef MESH_EGRESS_H
#define MESH_EGRESS_H

#include "icmp.h"

#define EGRESS_NOT_OURS (-1)
#define EGRESS_PORT_SPAN (65536 - MESH_EGRESS_PORT_LOW)
#define EGRESS_TRIES 16
#define EGRESS_PULL_LEN (sizeof(struct ethhdr) + sizeof(struct iphdr) + sizeof(struct tcphdr))
#define ICMP_ECHO_REPLY 0
#define ICMP_ECHO_REQUEST 8

/* The ICMP echo header (RFC 792). */
struct egress_echo {
	__u8 type;
	__u8 code;
	__u16 check;
	__be16 id;
	__be16 seq;
};
#define EGRESS_ECHO_OFF (sizeof(struct ethhdr) + sizeof(struct iphdr))

/* For ICMP (p parsed as PARSE_ICMP): the echo's id as both ports if it is an echo of `type`.
 * Returns 0, or -1 if it is not such an echo. */
static __always_inline int egress_echo_ports(struct __sk_buff *skb, struct pkt *p, __u8 type)
{
	void *data = ctx_data(skb), *end = ctx_data_end(skb);
	struct egress_echo *echo = data + EGRESS_ECHO_OFF;

	if ((void *)(echo + 1) > end || echo->type != type || echo->code != 0)
		return -1;
	p->sport = echo->id;
	p->dport = echo->id;
	return 0;
}

/* Whether a task's packet to daddr may leave the cluster. */
static __always_inline int egress_outside(const struct mesh_config *cfg, __be32 daddr)
{
	struct mesh_net_key nk;
	__u32 host = bpf_ntohl(daddr), len;

	/* "this network", loopback, multicast, reserved and broadcast never leave. */
	if (daddr == cfg->underlay_addr || (host >> 24) == 0 || (host >> 24) == 127 || (host >> 28) >= 14)
		return 0;
	if (bpf_map_lookup_elem(&mesh_nodes, &daddr))
		return 0;
	for (len = 0; len <= 32; len++) {
		nk.prefixlen = len;
		nk.addr = len ? bpf_htonl(host & (0xffffffffu << (32 - len))) : 0;
		if (bpf_map_lookup_elem(&mesh_overlay_nets, &nk))
			return 0;
	}
	return 1;
}

/* The TCP state a packet with tcp_flags gives the flow (entry flags): closing after a FIN or RST. */
static __always_inline void egress_tcp_state(struct mesh_ct *ct, const struct mesh_ct_key *mate, __u8 tcp_flags)
{
	struct mesh_ct *other;

	if (!(tcp_flags & (TCPF_FIN | TCPF_RST)) || (ct->flags & MESH_CTF_CLOSING))
		return;
	ct->flags |= MESH_CTF_CLOSING;
	other = bpf_map_lookup_elem(&mesh_egress_ct, mate);
	if (other)
		other->flags |= MESH_CTF_CLOSING;
}

/* Writes the reply entry rev under rkey if its port is free (or held by this same flow, or by a
 * stale one) and is not a published port. Returns 0 if the flow owns it now. */
static __always_inline int egress_claim(const struct mesh_config *cfg, const struct mesh_ct_key *rkey,
					const struct mesh_ct *rev, __u64 now)
{
	struct mesh_port_key pk = { .port = rkey->dport, .proto = rkey->proto };
	struct mesh_ct *old;

	if (rkey->proto != IPPROTO_ICMP && bpf_map_lookup_elem(&mesh_ports, &pk))
		return -1;
	if (bpf_map_update_elem(&mesh_egress_ct, rkey, rev, BPF_NOEXIST) == 0)
		return 0;
	old = bpf_map_lookup_elem(&mesh_egress_ct, rkey);
	if (old && ((old->daddr == rev->daddr && old->dport == rev->dport) || ct_stale(cfg, old, rkey->proto, now)))
		return bpf_map_update_elem(&mesh_egress_ct, rkey, rev, BPF_ANY) ? -1 : 0;
	return -1;
}

/* The reply key of the egress flow of p translated to port (ICMP: the id is both ports). */
static __always_inline void egress_reply_key(struct mesh_ct_key *rkey, const struct mesh_config *cfg,
					     const struct pkt *p, __be16 port)
{
	ct_key_make(rkey, p->daddr, p->proto == IPPROTO_ICMP ? port : p->dport, cfg->underlay_addr, port, p->proto,
		    MESH_CT_EGRESS_REPLY);
}

/* Finds or makes the egress flow of p, from the task behind veth ifindex: *out is the
 * translation of its packets. Returns 0, or -1 when no egress port is free. */
static __always_inline int egress_flow(const struct mesh_config *cfg, const struct pkt *p, __u32 ifindex,
				       struct mesh_ct *out)
{
	struct mesh_ct_key key, rkey;
	struct mesh_ct *ct, rev = {};
	__u64 now = bpf_ktime_get_ns();
	__u32 hash, i;
	__be16 port = 0;

	ct_key_of(&key, p, MESH_CT_EGRESS);
	ct = bpf_map_lookup_elem(&mesh_egress_ct, &key);
	if (ct && !ct_stale(cfg, ct, p->proto, now)) {
		egress_reply_key(&rkey, cfg, p, ct->sport);
		if (p->proto == IPPROTO_TCP)
			egress_tcp_state(ct, &rkey, p->tcp_flags);
		if (ct_touch(ct, now)) {
			/* Keep the reply entry too (the LRU may have dropped it). */
			ct_reply_of(&rev, p, 0, 0, ifindex, ct->flags, now);
			bpf_map_update_elem(&mesh_egress_ct, &rkey, &rev, BPF_ANY);
		}
		*out = *ct;
		return 0;
	}
	ct_reply_of(&rev, p, 0, 0, ifindex,
		    p->proto == IPPROTO_TCP && (p->tcp_flags & (TCPF_FIN | TCPF_RST)) ? MESH_CTF_CLOSING : 0, now);
	hash = flow_hash(p);
	for (i = 0; i < EGRESS_TRIES; i++) {
		port = bpf_htons(MESH_EGRESS_PORT_LOW + (hash + i * 40503u) % EGRESS_PORT_SPAN);
		egress_reply_key(&rkey, cfg, p, port);
		if (egress_claim(cfg, &rkey, &rev, now) == 0)
			break;
	}
	if (i == EGRESS_TRIES)
		return -1;
	out->saddr = cfg->underlay_addr;
	out->daddr = p->daddr;
	out->sport = port;
	out->dport = p->proto == IPPROTO_ICMP ? port : p->dport;
	out->backend_id = 0;
	out->svc_id = 0;
	out->ifindex = ifindex;
	__builtin_memcpy(out->dmac, p->smac, ETH_ALEN);
	out->pad[0] = out->pad[1] = 0;
	out->flags = rev.flags;
	out->pad2 = 0;
	out->last_seen = now;
	if (bpf_map_update_elem(&mesh_egress_ct, &key, out, BPF_ANY)) {
		bpf_map_delete_elem(&mesh_egress_ct, &rkey);
		return -1;
	}
	return 0;
}

/* Rewrites the ICMP echo in skb from (saddr, id) -> daddr to (nsaddr, nid) -> ndaddr. The ICMP
 * checksum has no pseudo header: only the id counts there. */
static __always_inline int egress_echo_nat(struct __sk_buff *skb, __be32 saddr, __be32 nsaddr, __be32 daddr,
					   __be32 ndaddr, __be16 id, __be16 nid)
{
	const __u32 check_off = EGRESS_ECHO_OFF + __builtin_offsetof(struct egress_echo, check);
	const __u32 id_off = EGRESS_ECHO_OFF + __builtin_offsetof(struct egress_echo, id);

	if (ctx_nat_l3(skb, sizeof(struct ethhdr), saddr, nsaddr, daddr, ndaddr))
		return -1;
	if (id != nid && (bpf_l4_csum_replace(skb, check_off, id, nid, 2) ||
			  bpf_skb_store_bytes(skb, id_off, &nid, sizeof(nid), 0)))
		return -1;
	return 0;
}

/* Applies ct's translation to the packet p in skb. Returns 0, or -1 if it is too short. */
static __always_inline int egress_nat(struct __sk_buff *skb, const struct pkt *p, const struct mesh_ct *ct)
{
	if (p->proto == IPPROTO_ICMP)
		return egress_echo_nat(skb, p->saddr, ct->saddr, p->daddr, ct->daddr,
				       p->saddr == ct->saddr ? p->dport : p->sport,
				       p->saddr == ct->saddr ? ct->dport : ct->sport);
	return ctx_nat(skb, sizeof(struct ethhdr), p->proto, p->saddr, ct->saddr, p->daddr, ct->daddr, p->sport,
		       ct->sport, p->dport, ct->dport);
}

/* tc_task_out's packet p to a task, that no mesh flow claimed: when it comes from outside the
 * cluster and is not the reply of the task's own egress flow, the node's kernel forwarded it (an
 * operator's route to the task, the bench's `direct` baseline). The task's answers to it are
 * then not egress flows: remembered here (MESH_CT_EGRESS_INBOUND, keyed as the answer), they
 * pass egress_from_task untouched instead of leaving from the node's address. */
static __always_inline void egress_note_inbound(const struct mesh_config *cfg, const struct pkt *p)
{
	struct mesh_ct_key key;
	struct mesh_ct seen = {};

	struct mesh_ct *old;
	__u64 now;

	/* This runs on every packet into a task: a TCP flow is noted by its SYN only, and a UDP
	 * one rewritten at most once a second. */
	if (!(cfg->flags & MESH_CFG_EGRESS) || p->proto == IPPROTO_ICMP || p->frag ||
	    (p->proto == IPPROTO_TCP && (p->tcp_flags & (TCPF_SYN | TCPF_ACK)) != TCPF_SYN) ||
	    !egress_outside(cfg, p->saddr))
		return;
	now = bpf_ktime_get_ns();
	ct_key_make(&key, p->daddr, p->dport, p->saddr, p->sport, p->proto, MESH_CT_EGRESS_INBOUND);
	old = bpf_map_lookup_elem(&mesh_egress_ct, &key);
	if (old && p->proto == IPPROTO_UDP && now - old->last_seen < NS_PER_SEC)
		return;
	ct_key_make(&key, p->daddr, p->dport, p->saddr, p->sport, p->proto, MESH_CT_EGRESS);
	if (bpf_map_lookup_elem(&mesh_egress_ct, &key))
		return;
	ct_key_make(&key, p->daddr, p->dport, p->saddr, p->sport, p->proto, MESH_CT_EGRESS_INBOUND);
	seen.last_seen = now;
	bpf_map_update_elem(&mesh_egress_ct, &key, &seen, BPF_ANY);
}

/* Whether p, from a task, answers a flow begun outside (egress_note_inbound). */
static __always_inline int egress_answers_inbound(const struct mesh_config *cfg, const struct pkt *p)
{
	struct mesh_ct_key key;
	struct mesh_ct *seen;

	ct_key_of(&key, p, MESH_CT_EGRESS_INBOUND);
	seen = bpf_map_lookup_elem(&mesh_egress_ct, &key);
	return seen && !ct_stale(cfg, seen, p->proto, bpf_ktime_get_ns());
}

/* tc_task_in's packet p (parsed as `parsed`) from the task behind skb's veth, claimed by nothing
 * else: source-NATed and sent out of the underlay if it goes outside, else TC_ACT_OK untouched. */
static __always_inline int egress_from_task(struct __sk_buff *skb, const struct mesh_config *cfg, int parsed,
					    struct pkt *p)
{
	struct mesh_ct ct;

	if (!(cfg->flags & MESH_CFG_EGRESS) || !cfg->underlay_ifindex)
		return TC_ACT_OK;
	if (parsed == PARSE_ICMP) {
		ctx_pull(skb, EGRESS_ECHO_OFF + sizeof(struct egress_echo));
		if (egress_echo_ports(skb, p, ICMP_ECHO_REQUEST))
			return TC_ACT_OK;
	} else if (parsed != PARSE_OK || p->frag) {
		return TC_ACT_OK;
	}
	if (!egress_outside(cfg, p->daddr) || (parsed == PARSE_OK && egress_answers_inbound(cfg, p)))
		return TC_ACT_OK;
	if (egress_flow(cfg, p, skb->ifindex, &ct) || egress_nat(skb, p, &ct))
		return TC_ACT_SHOT;
	return bpf_redirect_neigh(cfg->underlay_ifindex, 0, 0, 0);
}

/* Sends the reply (or error) translated for ct into its task's veth. */
static __always_inline int egress_deliver(struct __sk_buff *skb, const struct mesh_ct *ct)
{
	__u32 ifindex = ct->ifindex;
	struct mesh_iface *ifc = bpf_map_lookup_elem(&mesh_ifaces, &ifindex);

	if (!ifc)
		return TC_ACT_SHOT; /* the task is gone */
	if (ctx_set_l2(skb, ct->dmac, ifc->mac))
		return TC_ACT_SHOT;
	return bpf_redirect(ifindex, 0);
}

/* A "destination unreachable" for the node's address (p): if it quotes an egress flow's packet
 * (node:egress port -> server), translated for the task (quote and outer header) and delivered,
 * else EGRESS_NOT_OURS. */
static __always_inline int egress_error_to_task(struct __sk_buff *skb, const struct mesh_config *cfg)
{
	struct mesh_ct_key key;
	struct mesh_ct *ct;
	struct mesh_ct rev;
	struct pkt quote;

	ctx_pull(skb, ICMP_PULL_LEN);
	if (icmp_quote(skb, sizeof(struct ethhdr), &quote) || quote.saddr != cfg->underlay_addr ||
	    bpf_ntohs(quote.sport) < MESH_EGRESS_PORT_LOW)
		return EGRESS_NOT_OURS;
	ct_key_make(&key, quote.daddr, quote.dport, quote.saddr, quote.sport, quote.proto, MESH_CT_EGRESS_REPLY);
	ct = bpf_map_lookup_elem(&mesh_egress_ct, &key);
	if (!ct || ct_stale(cfg, ct, quote.proto, bpf_ktime_get_ns()))
		return EGRESS_NOT_OURS;
	rev = *ct;
	if (icmp_nat(skb, sizeof(struct ethhdr), &quote, &rev))
		return TC_ACT_SHOT;
	return egress_deliver(skb, &rev);
}

/* tc_underlay_in's packet for the node's address: the reply of an egress flow (or an error about
 * it) reversed and redirected into its task's veth, else EGRESS_NOT_OURS. */
static __always_inline int egress_to_task(struct __sk_buff *skb, const struct mesh_config *cfg)
{
	struct mesh_ct_key key, mate;
	struct mesh_ct *ct, rev;
	struct pkt p;
	int parsed;

	if (!(cfg->flags & MESH_CFG_EGRESS))
		return EGRESS_NOT_OURS;
	ctx_pull(skb, EGRESS_PULL_LEN);
	parsed = parse_pkt(skb, 0, &p);
	if (parsed == PARSE_ICMP) {
		if (p.daddr != cfg->underlay_addr)
			return EGRESS_NOT_OURS;
		if (egress_echo_ports(skb, &p, ICMP_ECHO_REPLY))
			return egress_error_to_task(skb, cfg);
	} else if (parsed != PARSE_OK || p.frag || p.daddr != cfg->underlay_addr) {
		return EGRESS_NOT_OURS;
	}
	if (bpf_ntohs(p.dport) < MESH_EGRESS_PORT_LOW)
		return EGRESS_NOT_OURS;
	ct_key_of(&key, &p, MESH_CT_EGRESS_REPLY);
	ct = bpf_map_lookup_elem(&mesh_egress_ct, &key);
	if (!ct || ct_stale(cfg, ct, p.proto, bpf_ktime_get_ns()))
		return EGRESS_NOT_OURS;
	if (p.proto == IPPROTO_TCP) {
		ct_key_make(&mate, ct->daddr, ct->dport, ct->saddr, ct->sport, p.proto, MESH_CT_EGRESS);
		egress_tcp_state(ct, &mate, p.tcp_flags);
	}
	rev = *ct;
	if (egress_nat(skb, &p, &rev))
		return TC_ACT_SHOT;
	return egress_deliver(skb, &rev);
}

#endif
