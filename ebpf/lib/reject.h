/* reject.h: answering a published TCP port that has no backend with a RST (XDP only: an XDP
 * frame has no checksum-offload state, so a fully computed checksum is always right; in tc the
 * skb may be CHECKSUM_PARTIAL, so the tc program lets the node's own stack answer instead). */
#ifndef MESH_REJECT_H
#define MESH_REJECT_H

#include "ctx.h"
#include "parse.h"

#ifdef MESH_XDP
#define RST_LEN (sizeof(struct ethhdr) + sizeof(struct iphdr) + sizeof(struct tcphdr))

/* Turns the TCP segment in ctx (parsed as p: IPv4 without options) into the RST that answers
 * it (RFC 793 "reset generation"), to be sent back with XDP_TX. Returns -1 to drop instead. */
static __always_inline int xdp_tcp_rst(struct xdp_md *ctx, const struct pkt *p)
{
	void *data = ctx_data(ctx), *end = ctx_data_end(ctx);
	struct ethhdr *eth = data;
	struct iphdr *ip = (void *)(eth + 1);
	struct tcphdr *tcp = (void *)(ip + 1);
	struct { __be32 saddr, daddr; __u8 zero, proto; __be16 len; } ph;
	__u32 seq, ack, payload, doff;
	__u8 in_flags, mac[ETH_ALEN];
	__s64 c;

	if ((void *)(tcp + 1) > end)
		return -1;
	in_flags = p->tcp_flags;
	if (in_flags & TCPF_RST)
		return -1;
	doff = tcp->doff * 4;
	payload = bpf_ntohs(ip->tot_len);
	if (payload < sizeof(*ip) + doff)
		return -1;
	payload -= sizeof(*ip) + doff;
	seq = tcp->ack_seq;
	ack = bpf_htonl(bpf_ntohl(tcp->seq) + payload + !!(in_flags & TCPF_SYN) + !!(in_flags & TCPF_FIN));
	__builtin_memcpy(mac, eth->h_source, ETH_ALEN);

	if (ctx_len(ctx) > RST_LEN && bpf_xdp_adjust_tail(ctx, (int)RST_LEN - (int)ctx_len(ctx)))
		return -1;
	data = ctx_data(ctx);
	end = ctx_data_end(ctx);
	eth = data;
	ip = (void *)(eth + 1);
	tcp = (void *)(ip + 1);
	if ((void *)(tcp + 1) > end)
		return -1;

	__builtin_memcpy(eth->h_source, eth->h_dest, ETH_ALEN);
	__builtin_memcpy(eth->h_dest, mac, ETH_ALEN);
	ip->tos = 0;
	ip->tot_len = bpf_htons(sizeof(*ip) + sizeof(*tcp));
	ip->id = 0;
	ip->frag_off = bpf_htons(0x4000);
	ip->ttl = 64;
	ip->saddr = p->daddr;
	ip->daddr = p->saddr;
	ip->check = 0;
	ip->check = ~csum_fold((__u32)bpf_csum_diff(0, 0, (void *)ip, sizeof(*ip), 0));

	tcp->source = p->dport;
	tcp->dest = p->sport;
	__builtin_memset((__u8 *)tcp + 4, 0, sizeof(*tcp) - 4);
	tcp->doff = 5;
	tcp->rst = 1;
	if (in_flags & TCPF_ACK) {
		tcp->seq = seq;
	} else {
		tcp->ack = 1;
		tcp->ack_seq = ack;
	}
	ph.saddr = ip->saddr;
	ph.daddr = ip->daddr;
	ph.zero = 0;
	ph.proto = IPPROTO_TCP;
	ph.len = bpf_htons(sizeof(*tcp));
	c = bpf_csum_diff(0, 0, (void *)&ph, sizeof(ph), 0);
	c = bpf_csum_diff(0, 0, (void *)tcp, sizeof(*tcp), (__u32)c);
	tcp->check = ~csum_fold((__u32)c);
	return 0;
}
#endif

#endif
