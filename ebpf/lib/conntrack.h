/* conntrack.h: lookups in mesh_ct. An entry is used only while it is fresh (idle timeouts from
 * mesh_config, long for TCP) and while its backend still holds the address it translated to:
 * a removed or replaced backend makes its entries dead at once, even before user space sweeps
 * them. A dead or missing entry sends the flow back through Maglev, which picks the same
 * backend while the set is unchanged. */
#ifndef MESH_CONNTRACK_H
#define MESH_CONNTRACK_H

#include "maps.h"
#include "parse.h"

#define NS_PER_SEC 1000000000ULL

/* The key of packets from (saddr, sport) to (daddr, dport). */
static __always_inline void ct_key_make(struct mesh_ct_key *k, __be32 saddr, __be16 sport, __be32 daddr,
					__be16 dport, __u8 proto, __u8 kind)
{
	k->saddr = saddr;
	k->daddr = daddr;
	k->sport = sport;
	k->dport = dport;
	k->proto = proto;
	k->kind = kind;
	k->pad[0] = 0;
	k->pad[1] = 0;
}

/* The key of p itself. */
static __always_inline void ct_key_of(struct mesh_ct_key *k, const struct pkt *p, __u8 kind)
{
	ct_key_make(k, p->saddr, p->sport, p->daddr, p->dport, p->proto, kind);
}

/* The idle time after which ct is stale: per state for published-port TCP flows (a SYN that
 * was never answered, a flow closing), else by protocol. */
static __always_inline __u64 ct_timeout(const struct mesh_config *cfg, const struct mesh_ct *ct, __u8 proto)
{
	__u64 timeout = proto == IPPROTO_TCP ? cfg->tcp_timeout_ns : cfg->udp_timeout_ns;
	__u64 state = timeout;

	if (proto != IPPROTO_TCP)
		return timeout;
	if (ct->flags & MESH_CTF_SYN_ONLY)
		state = MESH_CT_SYN_TIMEOUT_SEC * NS_PER_SEC;
	else if (ct->flags & MESH_CTF_CLOSING)
		state = MESH_CT_CLOSING_TIMEOUT_SEC * NS_PER_SEC;
	return state < timeout ? state : timeout;
}

/* Writes the any-source twin (source address 0) of the UDP entry (key, v) of an unSNATed
 * published-port flow's way back: a task answering from an unbound UDP socket answers from its
 * address on its first network, which need not be ingress (lib/clientip.h looks it up). */
static __always_inline void ct_write_any_source(const struct mesh_ct_key *key, const struct mesh_ct *v)
{
	struct mesh_ct_key any = *key;

	if (key->proto != IPPROTO_UDP)
		return;
	any.saddr = 0;
	bpf_map_update_elem(&mesh_ct, &any, v, BPF_ANY);
}

/* Whether ct is stale (idle longer than its timeout). */
static __always_inline int ct_stale(const struct mesh_config *cfg, const struct mesh_ct *ct, __u8 proto, __u64 now)
{
	return now - ct->last_seen > ct_timeout(cfg, ct, proto);
}

/* Whether ct may be used: fresh, and its backend still has the address backend_addr. */
static __always_inline int ct_alive(const struct mesh_config *cfg, const struct mesh_ct *ct,
				    __u8 proto, __u64 now, __be32 backend_addr)
{
	__u32 id = ct->backend_id;
	struct mesh_backend *be;

	if (ct_stale(cfg, ct, proto, now))
		return 0;
	be = bpf_map_lookup_elem(&mesh_backends, &id);
	return be && (be->flags & MESH_BE_VALID) && be->addr == backend_addr;
}

/* Refreshes last_seen at most once a second (keeps the entry's cache line mostly clean).
 * Returns 1 when it did. */
static __always_inline int ct_touch(struct mesh_ct *ct, __u64 now)
{
	if (now - ct->last_seen < NS_PER_SEC)
		return 0;
	ct->last_seen = now;
	return 1;
}

/* The state flags a TCP packet with flags tcp_flags gives a flow (entry flags): a FIN or RST
 * makes it closing; the client's ACK (no SYN: the handshake's last step, which a spoofed source
 * never sends) ends SYN-only. The backend's SYN-ACK does not: it answers spoofed SYNs too. */
static __always_inline __u32 ct_tcp_state(__u32 flags, __u8 tcp_flags, int from_client)
{
	if (tcp_flags & (TCPF_FIN | TCPF_RST))
		flags |= MESH_CTF_CLOSING;
	if (from_client && (tcp_flags & (TCPF_SYN | TCPF_ACK)) == TCPF_ACK)
		flags &= ~MESH_CTF_SYN_ONLY;
	return flags;
}

/* Sets the state flags of ct and of the entry of the other direction (key mate) to `flags`'s. */
static __always_inline void ct_set_state(struct mesh_ct *ct, const struct mesh_ct_key *mate, __u32 flags)
{
	const __u32 state = MESH_CTF_SYN_ONLY | MESH_CTF_CLOSING;
	struct mesh_ct *other;

	if ((ct->flags & state) == (flags & state))
		return;
	ct->flags = (ct->flags & ~state) | (flags & state);
	other = bpf_map_lookup_elem(&mesh_ct, mate);
	if (other)
		other->flags = (other->flags & ~state) | (flags & state);
}

#endif
