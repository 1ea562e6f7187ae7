/* parse.h: Ethernet + IPv4 + TCP/UDP headers into a struct pkt, with every bound checked.
 * IPv4 without options, TCP or UDP, is ours (PARSE_OK), and so is the first fragment of a UDP
 * datagram (PARSE_OK, frag set: it has the UDP header). ARP is reported so the task program can
 * answer for VIPs; ICMP (PARSE_ICMP) and later UDP fragments (PARSE_FRAG) with their addresses
 * (ports 0) so that ICMP errors and fragments of translated flows can follow them (related.h).
 * Everything else (IPv6, TCP fragments, IP options, truncated headers) is PARSE_OTHER and
 * passes to the kernel untouched. */
#ifndef MESH_PARSE_H
#define MESH_PARSE_H

#include <linux/tcp.h>
#include <linux/udp.h>
#include "ctx.h"

#define PARSE_OK 0
#define PARSE_OTHER 1
#define PARSE_ARP 2
#define PARSE_ICMP 3
#define PARSE_FRAG 4

/* ARP for Ethernet/IPv4 (linux/if_arp.h drags in libc headers). */
struct arp_eth {
	__be16 hrd;
	__be16 pro;
	__u8 hln;
	__u8 pln;
	__be16 op;
	__u8 sha[6];
	__u8 spa[4];
	__u8 tha[6];
	__u8 tpa[4];
};
#define ARPHRD_ETHER 1
#define ARPOP_REQUEST 1
#define ARPOP_REPLY 2

#define IP_MF 0x2000
#define IP_OFFSET 0x1fff

/* The fields the decisions need, copied out of the packet. */
struct pkt {
	__be32 saddr;
	__be32 daddr;
	__be16 sport;
	__be16 dport;
	__be16 ip_id;              /* set for fragments only */
	__u8 proto;
	__u8 tcp_flags;
	__u8 frag;                 /* PKT_FRAG_*, 0 for a whole datagram */
	__u8 smac[6];
};
#define PKT_FRAG_FIRST 1
#define PKT_FRAG_LATER 2

/* Fills the addresses of p for a packet without ports of ours (ICMP, a later fragment). */
static __always_inline void pkt_addrs(struct pkt *p, const struct ethhdr *eth, const struct iphdr *ip, __u8 frag)
{
	__builtin_memcpy(p->smac, eth->h_source, ETH_ALEN);
	p->saddr = ip->saddr;
	p->daddr = ip->daddr;
	p->sport = 0;
	p->dport = 0;
	p->ip_id = ip->id;
	p->proto = ip->protocol;
	p->tcp_flags = 0;
	p->frag = frag;
}

#define TCPF_FIN 0x01
#define TCPF_SYN 0x02
#define TCPF_RST 0x04
#define TCPF_ACK 0x10

/* Parses the frame whose Ethernet header starts at l2off (0, or the inner frame of VXLAN). */
static __always_inline int parse_pkt(CTX *ctx, __u32 l2off, struct pkt *p)
{
	void *data = ctx_data(ctx), *end = ctx_data_end(ctx);
	struct ethhdr *eth = data + l2off;
	struct iphdr *ip;
	__u16 *l4;

	if ((void *)(eth + 1) > end)
		return PARSE_OTHER;
	if (eth->h_proto == bpf_htons(ETH_P_ARP))
		return PARSE_ARP;
	if (eth->h_proto != bpf_htons(ETH_P_IP))
		return PARSE_OTHER;
	ip = (void *)(eth + 1);
	if ((void *)(ip + 1) > end)
		return PARSE_OTHER;
	if (ip->ihl != 5 || ip->version != 4)
		return PARSE_OTHER;
	p->frag = 0;
	p->ip_id = 0;
	if (ip->frag_off & bpf_htons(IP_MF | IP_OFFSET)) {
		if (ip->protocol != IPPROTO_UDP)
			return PARSE_OTHER;
		if (ip->frag_off & bpf_htons(IP_OFFSET)) {
			if (bpf_ntohs(ip->tot_len) > ctx_len(ctx) - l2off - sizeof(*eth))
				return PARSE_OTHER;
			pkt_addrs(p, eth, ip, PKT_FRAG_LATER);
			return PARSE_FRAG;
		}
		p->frag = PKT_FRAG_FIRST;
		p->ip_id = ip->id;
	}
	if (ip->protocol != IPPROTO_TCP && ip->protocol != IPPROTO_UDP) {
		if (ip->protocol != IPPROTO_ICMP || bpf_ntohs(ip->tot_len) > ctx_len(ctx) - l2off - sizeof(*eth))
			return PARSE_OTHER;
		pkt_addrs(p, eth, ip, 0);
		return PARSE_ICMP;
	}
	/* A datagram longer than the frame is truncated: the kernel's to drop, not ours to forward. */
	if (bpf_ntohs(ip->tot_len) > ctx_len(ctx) - l2off - sizeof(*eth) ||
	    bpf_ntohs(ip->tot_len) < sizeof(*ip) + (ip->protocol == IPPROTO_TCP ? sizeof(struct tcphdr) : sizeof(struct udphdr)))
		return PARSE_OTHER;
	l4 = (void *)(ip + 1);
	if (ip->protocol == IPPROTO_TCP) {
		struct tcphdr *tcp = (void *)l4;

		if ((void *)(tcp + 1) > end)
			return PARSE_OTHER;
		/* A header shorter than its minimum or longer than the datagram is malformed. */
		if (tcp->doff < 5 || sizeof(*ip) + tcp->doff * 4 > bpf_ntohs(ip->tot_len))
			return PARSE_OTHER;
		p->tcp_flags = ((__u8 *)tcp)[13];
	} else {
		if ((void *)((struct udphdr *)l4 + 1) > end)
			return PARSE_OTHER;
		p->tcp_flags = 0;
	}
	__builtin_memcpy(p->smac, eth->h_source, ETH_ALEN);
	p->saddr = ip->saddr;
	p->daddr = ip->daddr;
	p->sport = l4[0];
	p->dport = l4[1];
	p->proto = ip->protocol;
	return PARSE_OK;
}

#endif
