/* lb.h: the routing mesh's decisions, shared by the XDP and tc programs. They read the packet
 * only through struct pkt and answer with a translation (struct mesh_ct) to apply; the callers
 * apply it with the ctx.h helpers of their context. */
#ifndef MESH_LB_H
#define MESH_LB_H

#include <linux/errno.h>
#include "conntrack.h"
#include "maglev.h"
#include "native.h"

#define LB_PASS 0     /* not ours: hand to the kernel untouched */
#define LB_FORWARD 1  /* translate with *out and deliver */
#define LB_REJECT 2   /* a published port without a usable backend */

/* SNAT source ports tried after the client's own port: 1024..65535. */
#define SNAT_TRIES 8
#define SNAT_LOW 1024
#define SNAT_SPAN (65536 - SNAT_LOW)

/* The reply direction of the flow that p starts: rev undoes the translation on the way back
 * (from what the backend sends to what the client sent to). The caller picks the key. */
static __always_inline void ct_reply_of(struct mesh_ct *rev, const struct pkt *p, __u32 backend_id,
					__u32 svc_id, __u32 ifindex, __u8 flags, __u64 now)
{
	rev->saddr = p->daddr;
	rev->daddr = p->saddr;
	rev->sport = p->dport;
	rev->dport = p->sport;
	rev->backend_id = backend_id;
	rev->svc_id = svc_id;
	rev->ifindex = ifindex;
	__builtin_memcpy(rev->dmac, p->smac, ETH_ALEN);
	rev->flags = flags;
	rev->last_seen = now;
}

/* Writes the reverse entry of an ingress flow, claiming the SNAT port in rkey->dport. Returns 0
 * if this flow owns (rkey, rev) now. */
static __always_inline int ct_claim_reply(const struct mesh_config *cfg, struct mesh_ct_key *rkey,
					  struct mesh_ct *rev, __u64 now)
{
	struct mesh_ct *old;
	long err;

	err = bpf_map_update_elem(&mesh_ct, rkey, rev, BPF_NOEXIST);
	if (err == 0)
		return 0;
	if (err != -EEXIST) {
		mesh_count_drop(MESH_DROP_CT_FULL, 0);
		return -1;
	}
	old = bpf_map_lookup_elem(&mesh_ct, rkey);
	/* Taken by this same client flow (an earlier, expired entry), or by a stale flow (an
	 * unanswered SYN, a closed connection): ours now. */
	if (old && ((old->daddr == rev->daddr && old->dport == rev->dport && old->saddr == rev->saddr &&
		     old->sport == rev->sport) ||
		    ct_stale(cfg, old, rkey->proto, now)))
		return bpf_map_update_elem(&mesh_ct, rkey, rev, BPF_ANY);
	return -1;
}

/* Claims the SNAT reply entry of a new ingress flow (rkey->daddr = the node's ingress address):
 * the client's port when free, else a few hashed ones. Returns 0, or -1 if none was free. */
static __always_inline int ct_claim_snat(const struct mesh_config *cfg, struct mesh_ct_key *rkey,
					 struct mesh_ct *rev, __u32 hash, __u64 now)
{
	int i;

	rkey->daddr = cfg->ingress_addr;
	if (ct_claim_reply(cfg, rkey, rev, now) == 0)
		return 0;
	for (i = 1; i <= SNAT_TRIES; i++) {
		rkey->dport = bpf_htons(SNAT_LOW + (hash + i * 40503u) % SNAT_SPAN);
		if (ct_claim_reply(cfg, rkey, rev, now) == 0)
			return 0;
	}
	mesh_count_drop(MESH_DROP_SNAT_EXHAUSTED, 0);
	return -1;
}

/* A packet to a published port on the underlay address: find or make its flow. The client's
 * address and port are kept (lib/clientip.h) unless `snat` (a task calling its own node's
 * published port: the reply must come back through the node, not straight from the backend),
 * or unless the reply tuple (backend -> client) is taken by another flow: then the source
 * becomes the node's ingress address (SNAT). */
static __always_inline int lb_ingress_flow(const struct mesh_config *cfg, const struct pkt *p,
					   __u32 ifindex, int snat, struct mesh_ct *out)
{
	struct mesh_port_key pk = { .port = p->dport, .proto = p->proto };
	struct mesh_ct_key key, rkey;
	struct mesh_frontend *fe;
	struct mesh_backend *be;
	struct mesh_ct *ct, rev = {};
	__u64 now = bpf_ktime_get_ns();
	__u32 hash, backend_id = 0;

	if (p->daddr != cfg->underlay_addr)
		return LB_PASS;
	fe = bpf_map_lookup_elem(&mesh_ports, &pk);
	if (!fe)
		return LB_PASS;
	ct_key_of(&key, p, MESH_CT_INGRESS);
	ct = bpf_map_lookup_elem(&mesh_ct, &key);
	if (ct && ct_alive(cfg, ct, p->proto, now, ct->daddr)) {
		int syn = p->proto == IPPROTO_TCP && (p->tcp_flags & (TCPF_SYN | TCPF_ACK)) == TCPF_SYN;

		ct_key_make(&rkey, ct->daddr, ct->dport, ct->saddr, ct->sport, p->proto, MESH_CT_INGRESS_REPLY);
		if (syn) {
			/* A new connection on the entries of the client port's earlier one (or the SYN
			 * again): SYN-only, not closing. */
			ct->flags = (ct->flags & ~MESH_CTF_CLOSING) | MESH_CTF_SYN_ONLY;
			ct->last_seen = now;
		} else if (p->proto == IPPROTO_TCP) {
			ct_set_state(ct, &rkey, ct_tcp_state(ct->flags, p->tcp_flags, 1));
		}
		if (syn || ct_touch(ct, now)) {
			/* Keep the reverse entry alive too (the LRU may have dropped it; a SYN's reverse
			 * entry may have been taken by the client's flow through another node, see
			 * clientip_record_return). */
			ct_reply_of(&rev, p, ct->backend_id, ct->svc_id, ct->ifindex, ct->flags, now);
			bpf_map_update_elem(&mesh_ct, &rkey, &rev, BPF_ANY);
			if (ct->saddr == p->saddr && (ct->flags & MESH_CTF_LOCAL))
				ct_write_any_source(&rkey, &rev);
		}
		*out = *ct;
		return LB_FORWARD;
	}
	if (fe->flags & MESH_FE_NO_BACKEND)
		return LB_REJECT;
	hash = flow_hash(p);
	be = maglev_pick(fe->ring_id, hash, &backend_id);
	if (!be)
		return LB_REJECT;

	/* A flow begun by a bare SYN holds its entries (and SNAT port) only briefly until the
	 * backend answers: spoofed SYNs cannot keep the ports. */
	ct_reply_of(&rev, p, backend_id, fe->svc_id, ifindex,
		    ((be->flags & MESH_BE_LOCAL) ? MESH_CTF_LOCAL : 0) |
			    (p->proto == IPPROTO_TCP && (p->tcp_flags & (TCPF_SYN | TCPF_ACK)) == TCPF_SYN ?
				     MESH_CTF_SYN_ONLY :
				     0),
		    now);
	/* The reply as the backend sends it: to the client itself, else to the SNAT source. A
	 * backend reached by native routing keeps the client's address too: its node takes the
	 * client's packet from this node's MAC and sends the replies back here (lib/native.h). */
	ct_key_make(&rkey, be->addr, be->port, p->saddr, p->sport, p->proto, MESH_CT_INGRESS_REPLY);
	if (snat || ct_claim_reply(cfg, &rkey, &rev, now)) {
		if (ct_claim_snat(cfg, &rkey, &rev, hash, now))
			return LB_REJECT;
	} else if (rev.flags & MESH_CTF_LOCAL) {
		ct_write_any_source(&rkey, &rev);
	}

	out->saddr = rkey.daddr;
	out->daddr = be->addr;
	out->sport = rkey.dport;
	out->dport = be->port;
	out->backend_id = backend_id;
	out->svc_id = fe->svc_id;
	out->ifindex = ifindex;
	__builtin_memcpy(out->dmac, be->mac, ETH_ALEN);
	out->pad[0] = out->pad[1] = 0;
	out->flags = rev.flags;
	out->pad2 = 0;
	out->last_seen = now;
	if (bpf_map_update_elem(&mesh_ct, &key, out, BPF_ANY))
		mesh_count_drop(MESH_DROP_CT_FULL, 0);
	mesh_count(fe->svc_id, 0, 1);
	return LB_FORWARD;
}

/* A client's packet to a published port: its flow, the client's address kept. */
static __always_inline int lb_ingress(const struct mesh_config *cfg, const struct pkt *p,
				      __u32 ifindex, struct mesh_ct *out)
{
	return lb_ingress_flow(cfg, p, ifindex, 0, out);
}

/* A packet from a task (on network vni) to a VIP: find or make its flow. Ports are kept.
 * Hairpin (Cilium's LB_HAIRPIN): a task balanced to itself would get its own packet from its
 * own address, which its kernel drops as martian, so such a flow's source becomes the VIP
 * (MESH_CTF_HAIRPIN; the caller sends it back out the task's veth), and the task's replies,
 * addressed to VIP:caller port, find their reverse entry here. */
static __always_inline int lb_vip(const struct mesh_config *cfg, const struct pkt *p, __u32 vni,
				  struct mesh_ct *out)
{
	struct mesh_vip_key vk = { .vni = vni, .addr = p->daddr };
	struct mesh_ct_key key, rkey;
	struct mesh_frontend *fe;
	struct mesh_backend *be;
	struct mesh_ct *ct, rev = {};
	__u64 now = bpf_ktime_get_ns();
	__u32 backend_id = 0;
	int hairpin;

	fe = bpf_map_lookup_elem(&mesh_vips, &vk);
	if (!fe)
		return LB_PASS;
	ct_key_of(&key, p, MESH_CT_VIP);
	ct = bpf_map_lookup_elem(&mesh_ct, &key);
	if (ct && ct_alive(cfg, ct, p->proto, now, ct->daddr)) {
		ct_touch(ct, now);
		*out = *ct;
		return LB_FORWARD;
	}
	/* Not a flow to the VIP: maybe a hairpin flow's reply (task -> VIP:caller port). */
	ct_key_of(&rkey, p, MESH_CT_VIP_REPLY);
	ct = bpf_map_lookup_elem(&mesh_ct, &rkey);
	if (ct && (ct->flags & MESH_CTF_HAIRPIN) && ct_alive(cfg, ct, p->proto, now, p->saddr)) {
		ct_touch(ct, now);
		*out = *ct;
		return LB_FORWARD;
	}
	if (fe->flags & MESH_FE_NO_BACKEND)
		return LB_REJECT;
	be = maglev_pick(fe->ring_id, flow_hash(p), &backend_id);
	if (!be)
		return LB_REJECT;

	hairpin = be->addr == p->saddr;
	out->saddr = hairpin ? p->daddr : p->saddr;
	out->daddr = be->addr;
	out->sport = p->sport;
	out->dport = be->port ? be->port : p->dport;
	out->backend_id = backend_id;
	out->svc_id = fe->svc_id;
	out->ifindex = 0;
	__builtin_memcpy(out->dmac, be->mac, ETH_ALEN);
	out->pad[0] = out->pad[1] = 0;
	out->flags = ((be->flags & MESH_BE_LOCAL) ? MESH_CTF_LOCAL : 0) | (hairpin ? MESH_CTF_HAIRPIN : 0);
	out->pad2 = 0;
	out->last_seen = now;

	ct_key_make(&rkey, be->addr, out->dport, out->saddr, p->sport, p->proto, MESH_CT_VIP_REPLY);
	ct_reply_of(&rev, p, backend_id, fe->svc_id, 0, out->flags, now);
	bpf_map_update_elem(&mesh_ct, &rkey, &rev, BPF_ANY);
	bpf_map_update_elem(&mesh_ct, &key, out, BPF_ANY);
	mesh_count(fe->svc_id, 0, 1);
	return LB_FORWARD;
}

/* A reply (kind MESH_CT_INGRESS_REPLY or MESH_CT_VIP_REPLY): its translation, if any. */
static __always_inline int lb_reply(const struct mesh_config *cfg, const struct pkt *p, __u8 kind,
				    struct mesh_ct *out)
{
	struct mesh_ct_key key;
	struct mesh_ct *ct;
	__u64 now = bpf_ktime_get_ns();

	ct_key_of(&key, p, kind);
	ct = bpf_map_lookup_elem(&mesh_ct, &key);
	if (!ct || !ct_alive(cfg, ct, p->proto, now, p->saddr))
		return LB_PASS;
	if (kind == MESH_CT_INGRESS_REPLY && p->proto == IPPROTO_TCP) {
		/* The forward entry: what the client sent, before translation. */
		ct_key_make(&key, ct->daddr, ct->dport, ct->saddr, ct->sport, p->proto, MESH_CT_INGRESS);
		ct_set_state(ct, &key, ct_tcp_state(ct->flags, p->tcp_flags, 0));
	}
	/* The backend's SYN-ACKs (retransmitted to a spoofed source that never answers) do not keep
	 * a SYN-only flow, and its SNAT port, alive: only the client's packets do. */
	if (!(ct->flags & MESH_CTF_SYN_ONLY))
		ct_touch(ct, now);
	*out = *ct;
	return LB_FORWARD;
}

#endif
