/* ctx.h: the few operations whose body differs between XDP and tc (Cilium's ctx_* habit).
 * A C file defines MESH_XDP before including the lib headers to get the XDP bodies; otherwise
 * it gets the tc (__sk_buff) ones. Everything above this layer is shared logic.
 *
 * tc rewrites go through bpf_skb_store_bytes and bpf_l3/l4_csum_replace, which keep skbs in
 * CHECKSUM_PARTIAL (GSO from veths) right; XDP writes directly and updates checksums
 * incrementally (RFC 1624). */
#ifndef MESH_CTX_H
#define MESH_CTX_H

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#ifdef MESH_XDP
#define CTX struct xdp_md
#define MESH_PASS XDP_PASS
#define MESH_DROP XDP_DROP
#else
#define CTX struct __sk_buff
#define MESH_PASS TC_ACT_OK
#define MESH_DROP TC_ACT_SHOT
#endif

#define ctx_data(ctx) ((void *)(long)(ctx)->data)
#define ctx_data_end(ctx) ((void *)(long)(ctx)->data_end)

/* Offsets inside the IPv4 header. */
#define IP_CSUM_OFF __builtin_offsetof(struct iphdr, check)
#define IP_SADDR_OFF __builtin_offsetof(struct iphdr, saddr)
#define IP_DADDR_OFF __builtin_offsetof(struct iphdr, daddr)

/* One's complement helpers (raw words, byte-order independent). */
static __always_inline __u16 csum_fold(__u64 c)
{
	c = (c & 0xffff) + (c >> 16);
	c = (c & 0xffff) + (c >> 16);
	c = (c & 0xffff) + (c >> 16);
	return (__u16)c;
}

static __always_inline void csum_replace4(__u16 *sum, __u32 from, __u32 to)
{
	__u64 c = (__u16)~*sum;

	c += (__u16)~from + (__u16)~(from >> 16) + (__u16)to + (__u16)(to >> 16);
	*sum = ~csum_fold(c);
}

static __always_inline void csum_replace2(__u16 *sum, __u16 from, __u16 to)
{
	__u64 c = (__u16)~*sum;

	c += (__u16)~from + to;
	*sum = ~csum_fold(c);
}

#ifdef MESH_XDP
/* The pseudo-header sum (raw words) of a TCP/UDP segment of len bytes. */
static __always_inline __u64 pseudo_sum(__be32 saddr, __be32 daddr, __u8 proto, __u16 len)
{
	return (__u64)(saddr & 0xffff) + (saddr >> 16) + (daddr & 0xffff) + (daddr >> 16) +
	       bpf_htons(proto) + bpf_htons(len);
}

/* Segments up to this many 16-bit words get a full checksum (a 1500-byte MTU needs 740). */
#define L4_MAX_WORDS 760

/* The full L4 checksum of the segment at l4off (its checksum field must read 0). */
static __always_inline int l4_full_csum(struct xdp_md *ctx, __u32 l4off, __u16 len, __be32 saddr,
					__be32 daddr, __u8 proto, __u16 *out)
{
	void *data = ctx_data(ctx), *end = ctx_data_end(ctx);
	__u64 sum = pseudo_sum(saddr, daddr, proto, len);
	__u16 *w;
	__u8 *b;
	__u32 i;

	if (l4off > 256 || len / 2 > L4_MAX_WORDS)
		return -1;
	w = data + l4off;
	for (i = 0; i < L4_MAX_WORDS; i++) {
		if (i >= len / 2)
			break;
		if ((void *)(w + 1) > end)
			return -1;
		sum += *w;
		w++;
	}
	if (len & 1) {
		b = (void *)w;
		if ((void *)(b + 1) > end)
			return -1;
		sum += *b; /* the odd last byte, padded with a zero byte */
	}
	*out = ~csum_fold(sum);
	return 0;
}
#endif

/* Makes sure the first n bytes (or the whole packet if shorter) are directly readable. */
static __always_inline void ctx_pull(CTX *ctx, __u32 n)
{
#ifndef MESH_XDP
	if (ctx_data(ctx) + n > ctx_data_end(ctx))
		bpf_skb_pull_data(ctx, ctx->len < n ? ctx->len : n);
#endif
}

static __always_inline __u32 ctx_len(CTX *ctx)
{
#ifdef MESH_XDP
	return ctx_data_end(ctx) - ctx_data(ctx);
#else
	return ctx->len;
#endif
}

/* Rewrites addresses and ports of the IPv4 packet at l3off (no options: l4 at l3off + 20) and
 * fixes the IP and TCP/UDP checksums. Returns 0, or -1 if the packet is too short. */
static __always_inline int ctx_nat(CTX *ctx, __u32 l3off, __u8 proto,
				   __be32 osaddr, __be32 nsaddr, __be32 odaddr, __be32 ndaddr,
				   __be16 osport, __be16 nsport, __be16 odport, __be16 ndport)
{
	__u32 l4off = l3off + sizeof(struct iphdr);
	__u32 csum_off = l4off + (proto == IPPROTO_TCP ? 16 : 6);
#ifdef MESH_XDP
	void *data = ctx_data(ctx), *end = ctx_data_end(ctx);
	struct iphdr *ip;
	__u16 *ports, *l4csum, l4len, full;
	int udp_nocsum, partial;

	if (l3off > 256)
		return -1;
	ip = data + l3off;
	if ((void *)(ip + 1) > end)
		return -1;
	ports = data + l4off;
	l4csum = data + csum_off;
	if ((void *)(ports + 2) > end || (void *)(l4csum + 1) > end)
		return -1;
	udp_nocsum = proto == IPPROTO_UDP && *l4csum == 0;
	l4len = bpf_ntohs(ip->tot_len) - sizeof(*ip);
	/* A frame from a local veth may carry CHECKSUM_PARTIAL's half-done checksum (the folded
	 * pseudo-header sum): XDP has no offload state to finish it later, so it is computed in
	 * full here. (Frames from real NICs always carry full checksums.) */
	partial = !udp_nocsum && !(ip->frag_off & bpf_htons(0x2000 /* MF: a first fragment's sum is whole */)) &&
		  *l4csum == csum_fold(pseudo_sum(osaddr, odaddr, proto, l4len));
	csum_replace4(&ip->check, osaddr, nsaddr);
	csum_replace4(&ip->check, odaddr, ndaddr);
	ip->saddr = nsaddr;
	ip->daddr = ndaddr;
	if (partial) {
		ports[0] = nsport;
		ports[1] = ndport;
		*l4csum = 0;
		if (l4_full_csum(ctx, l4off, l4len, nsaddr, ndaddr, proto, &full))
			return -1;
		data = ctx_data(ctx);
		end = ctx_data_end(ctx);
		l4csum = data + csum_off;
		if ((void *)(l4csum + 1) > end)
			return -1;
		*l4csum = proto == IPPROTO_UDP && full == 0 ? 0xffff : full;
		return 0;
	}
	if (!udp_nocsum) {
		csum_replace4(l4csum, osaddr, nsaddr);
		csum_replace4(l4csum, odaddr, ndaddr);
		csum_replace2(l4csum, osport, nsport);
		csum_replace2(l4csum, odport, ndport);
		if (proto == IPPROTO_UDP && *l4csum == 0)
			*l4csum = 0xffff;
	}
	ports[0] = nsport;
	ports[1] = ndport;
	return 0;
#else
	__u64 mangled = proto == IPPROTO_UDP ? BPF_F_MARK_MANGLED_0 : 0;

	if (osaddr != nsaddr) {
		if (bpf_l4_csum_replace(ctx, csum_off, osaddr, nsaddr, BPF_F_PSEUDO_HDR | mangled | 4) ||
		    bpf_l3_csum_replace(ctx, l3off + IP_CSUM_OFF, osaddr, nsaddr, 4) ||
		    bpf_skb_store_bytes(ctx, l3off + IP_SADDR_OFF, &nsaddr, 4, 0))
			return -1;
	}
	if (odaddr != ndaddr) {
		if (bpf_l4_csum_replace(ctx, csum_off, odaddr, ndaddr, BPF_F_PSEUDO_HDR | mangled | 4) ||
		    bpf_l3_csum_replace(ctx, l3off + IP_CSUM_OFF, odaddr, ndaddr, 4) ||
		    bpf_skb_store_bytes(ctx, l3off + IP_DADDR_OFF, &ndaddr, 4, 0))
			return -1;
	}
	if (osport != nsport) {
		if (bpf_l4_csum_replace(ctx, csum_off, osport, nsport, mangled | 2) ||
		    bpf_skb_store_bytes(ctx, l4off, &nsport, 2, 0))
			return -1;
	}
	if (odport != ndport) {
		if (bpf_l4_csum_replace(ctx, csum_off, odport, ndport, mangled | 2) ||
		    bpf_skb_store_bytes(ctx, l4off + 2, &ndport, 2, 0))
			return -1;
	}
	return 0;
#endif
}

/* Rewrites only the addresses of the IPv4 packet at l3off (a later fragment: no L4 header; its
 * first fragment carried the L4 checksum's share of the change). Returns 0, or -1 if too short. */
static __always_inline int ctx_nat_l3(CTX *ctx, __u32 l3off, __be32 osaddr, __be32 nsaddr, __be32 odaddr,
				      __be32 ndaddr)
{
#ifdef MESH_XDP
	struct iphdr *ip;

	if (l3off > 256)
		return -1;
	ip = ctx_data(ctx) + l3off;
	if ((void *)(ip + 1) > ctx_data_end(ctx))
		return -1;
	csum_replace4(&ip->check, osaddr, nsaddr);
	csum_replace4(&ip->check, odaddr, ndaddr);
	ip->saddr = nsaddr;
	ip->daddr = ndaddr;
	return 0;
#else
	if (osaddr != nsaddr &&
	    (bpf_l3_csum_replace(ctx, l3off + IP_CSUM_OFF, osaddr, nsaddr, 4) ||
	     bpf_skb_store_bytes(ctx, l3off + IP_SADDR_OFF, &nsaddr, 4, 0)))
		return -1;
	if (odaddr != ndaddr &&
	    (bpf_l3_csum_replace(ctx, l3off + IP_CSUM_OFF, odaddr, ndaddr, 4) ||
	     bpf_skb_store_bytes(ctx, l3off + IP_DADDR_OFF, &ndaddr, 4, 0)))
		return -1;
	return 0;
#endif
}

/* Sets the Ethernet destination and source of the frame at offset 0. */
static __always_inline int ctx_set_l2(CTX *ctx, const __u8 *dmac, const __u8 *smac)
{
#ifdef MESH_XDP
	struct ethhdr *eth = ctx_data(ctx);

	if ((void *)(eth + 1) > ctx_data_end(ctx))
		return -1;
	__builtin_memcpy(eth->h_dest, dmac, ETH_ALEN);
	__builtin_memcpy(eth->h_source, smac, ETH_ALEN);
	return 0;
#else
	if (bpf_skb_store_bytes(ctx, 0, dmac, ETH_ALEN, 0) ||
	    bpf_skb_store_bytes(ctx, ETH_ALEN, smac, ETH_ALEN, 0))
		return -1;
	return 0;
#endif
}

#endif
