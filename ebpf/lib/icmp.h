/* icmp.h: ICMP errors that answer a translated flow, translated back (Cilium's nat.h habit,
 * Katran's ICMP handling). A "destination unreachable" (type 3: host unreachable, port
 * unreachable, fragmentation needed, ...) quotes the packet it answers; that quoted packet went
 * the opposite way of the error, so its reversed tuple is the key of the flow's conntrack entry
 * on this side, and the entry's translation, reversed, is what the quote must read on the other
 * side. Outer addresses follow the quote: the error goes to the translated quote's source and
 * comes from its destination (the only peer the receiver knows: the published address, the VIP,
 * or the node's ingress address).
 *
 * The rewrite is direct and incremental in both contexts: every change inside the ICMP message
 * is matched by a change of a checksum in the same message, so the ICMP checksum (no pseudo
 * header) and an skb's CHECKSUM_COMPLETE sum stay right; ICMP errors are never CHECKSUM_PARTIAL.
 * Only the first fragment of a quote has ports, and only a quote of 20 TCP bytes holds the TCP
 * checksum (else it is left as quoted, as netfilter does). Nothing here is on the TCP/UDP path:
 * parse_pkt reports ICMP as PARSE_ICMP and related.h brings it here. */
#ifndef MESH_ICMP_H
#define MESH_ICMP_H

#include "lb.h"

#define ICMP_DEST_UNREACH 3

/* The ICMP header of an error (RFC 792): type, code, checksum, 4 bytes that depend on the type. */
struct icmp_err_hdr {
	__u8 type;
	__u8 code;
	__u16 check;
	__be32 rest;               /* unused, or the next-hop MTU of "fragmentation needed" */
};

/* Offsets of an ICMP error's parts from its outer IPv4 header. */
#define ICMP_OFF sizeof(struct iphdr)
#define ICMP_INNER_OFF (ICMP_OFF + sizeof(struct icmp_err_hdr))
#define ICMP_INNER_L4_OFF (ICMP_INNER_OFF + sizeof(struct iphdr))
/* Enough to read everything rewritten: the quote's IP header and TCP header up to its checksum. */
#define ICMP_PULL_LEN (sizeof(struct ethhdr) + ICMP_INNER_L4_OFF + 18)

/* Reads the packet quoted by the ICMP error whose IPv4 header is at l3off into *inner.
 * Returns 0 for a destination-unreachable quoting the first bytes of TCP or UDP, else -1. */
static __always_inline int icmp_quote(CTX *ctx, __u32 l3off, struct pkt *inner)
{
	void *data = ctx_data(ctx), *end = ctx_data_end(ctx);
	struct icmp_err_hdr *icmp;
	struct iphdr *iip;
	__be16 *ports;

	if (l3off > 256)
		return -1;
	icmp = data + l3off + ICMP_OFF;
	iip = data + l3off + ICMP_INNER_OFF;
	ports = data + l3off + ICMP_INNER_L4_OFF;
	if ((void *)ports + 8 > end)
		return -1;
	if (icmp->type != ICMP_DEST_UNREACH)
		return -1;
	if (iip->ihl != 5 || iip->version != 4 || (iip->frag_off & bpf_htons(IP_OFFSET)))
		return -1;
	if (iip->protocol != IPPROTO_TCP && iip->protocol != IPPROTO_UDP)
		return -1;
	inner->saddr = iip->saddr;
	inner->daddr = iip->daddr;
	inner->sport = ports[0];
	inner->dport = ports[1];
	inner->proto = iip->protocol;
	inner->tcp_flags = 0;
	return 0;
}

/* The translation of the flow the quote belongs to: the entry of kind `kind` keyed by the
 * quote reversed. A forward entry (ingress, VIP) is checked against its backend's address, a
 * reply entry against the quote's destination (the backend). Errors do not refresh the entry. */
static __always_inline int icmp_flow(const struct mesh_config *cfg, const struct pkt *inner, __u8 kind,
				     struct mesh_ct *out)
{
	int forward = kind == MESH_CT_INGRESS || kind == MESH_CT_VIP;
	struct mesh_ct_key key;
	struct mesh_ct *ct;

	ct_key_make(&key, inner->daddr, inner->dport, inner->saddr, inner->sport, inner->proto, kind);
	ct = bpf_map_lookup_elem(&mesh_ct, &key);
	if (!ct)
		return LB_PASS;
	/* A return entry (clientip.h) has no backend of this node's: only its age counts. */
	if (kind == MESH_CT_INGRESS_RETURN ? ct_stale(cfg, ct, inner->proto, bpf_ktime_get_ns()) :
					     !ct_alive(cfg, ct, inner->proto, bpf_ktime_get_ns(),
						       forward ? ct->daddr : inner->daddr))
		return LB_PASS;
	*out = *ct;
	return LB_FORWARD;
}

/* Rewrites the ICMP error at l3off (quote parsed as inner) for the flow ct: the quote becomes
 * (ct->daddr:ct->dport -> ct->saddr:ct->sport), the outer header (ct->saddr -> ct->daddr).
 * Returns 0, or -1 if the packet is too short. */
static __always_inline int icmp_nat(CTX *ctx, __u32 l3off, const struct pkt *inner, const struct mesh_ct *ct)
{
	void *data = ctx_data(ctx), *end = ctx_data_end(ctx);
	struct icmp_err_hdr *icmp;
	struct iphdr *ip, *iip;
	__u16 *ports, *l4csum = 0, old_iip_check, old_l4csum = 0;
	__u32 csum_at;

	if (l3off > 256)
		return -1;
	ip = data + l3off;
	icmp = data + l3off + ICMP_OFF;
	iip = data + l3off + ICMP_INNER_OFF;
	ports = data + l3off + ICMP_INNER_L4_OFF;
	if ((void *)ports + 8 > end)
		return -1;
	csum_at = inner->proto == IPPROTO_TCP ? 16 : 6;
	/* The quoted L4 checksum, if the quote holds it (and, for UDP, if one was sent). */
	if ((void *)ports + csum_at + 2 <= end &&
	    bpf_ntohs(ip->tot_len) >= ICMP_INNER_L4_OFF + csum_at + 2) {
		l4csum = (void *)ports + csum_at;
		if (inner->proto == IPPROTO_UDP && *l4csum == 0)
			l4csum = 0;
	}

	old_iip_check = iip->check;
	csum_replace4(&iip->check, inner->saddr, ct->daddr);
	csum_replace4(&iip->check, inner->daddr, ct->saddr);
	if (l4csum) {
		old_l4csum = *l4csum;
		csum_replace4(l4csum, inner->saddr, ct->daddr);
		csum_replace4(l4csum, inner->daddr, ct->saddr);
		csum_replace2(l4csum, inner->sport, ct->dport);
		csum_replace2(l4csum, inner->dport, ct->sport);
		if (inner->proto == IPPROTO_UDP && *l4csum == 0)
			*l4csum = 0xffff;
		csum_replace2(&icmp->check, old_l4csum, *l4csum);
	}
	csum_replace4(&icmp->check, inner->saddr, ct->daddr);
	csum_replace4(&icmp->check, inner->daddr, ct->saddr);
	csum_replace2(&icmp->check, old_iip_check, iip->check);
	csum_replace2(&icmp->check, inner->sport, ct->dport);
	csum_replace2(&icmp->check, inner->dport, ct->sport);
	iip->saddr = ct->daddr;
	iip->daddr = ct->saddr;
	ports[0] = ct->dport;
	ports[1] = ct->sport;

	csum_replace4(&ip->check, ip->saddr, ct->saddr);
	csum_replace4(&ip->check, ip->daddr, ct->daddr);
	ip->saddr = ct->saddr;
	ip->daddr = ct->daddr;
	return 0;
}

#endif
