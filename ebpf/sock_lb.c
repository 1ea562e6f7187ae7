/* sock_lb.c: socket-level balancing, cgroup sock_addr programs (Cilium's socket-LB idea).
 *
 * sock_connect4      connect() of a TCP or UDP socket: a frontend becomes a backend
 * sock_sendmsg4      sendto()/sendmsg() with an address on an unconnected UDP socket: the same
 * sock_recvmsg4      recvfrom()/recvmsg() on UDP: a reply's source becomes what was dialled
 * sock_getpeername4  getpeername(): the peer reads as what was dialled
 *
 * The frontends and backends are the tc/XDP programs' own maps (mesh_ports, mesh_vips,
 * mesh_rings, mesh_backends, shared through their pins), so a socket and a packet meet the same
 * Maglev rings. A translated socket then talks to its backend directly: no conntrack entry, no
 * per-packet rewrite.
 *
 * Attached at the cgroup2 root, these programs run for every socket of the machine, in every
 * network namespace, next to the programs of other nodes' meshd (one attachment each). They act
 * only on sockets of this node's namespace (sock_lb_config.netns_cookie): published ports at a
 * loopback address, the advertised address or the node's ingress address; and of the task
 * namespaces this node plumbed (sock_lb_netns): VIPs of the networks listed for them. Anything
 * else is left untouched. They never refuse a call (always 1): a frontend without a usable
 * backend is left as dialled, where nothing listens. */
#include "lib/maglev.h"

/* The verdict of every program here: go on with the call. */
#define SOCK_ALLOW 1

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct mesh_sock_config);
	MESH_PIN;
} sock_lb_config SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MESH_SOCK_MAX_NETNS);
	__type(key, __u64);
	__type(value, struct mesh_sock_netns);
	MESH_PIN;
} sock_lb_netns SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, MESH_SOCK_REV_SIZE);
	__type(key, struct mesh_sock_rev_key);
	__type(value, struct mesh_sock_rev);
	MESH_PIN;
} sock_lb_rev SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, MESH_MAX_SERVICES);
	__type(key, __u32);
	__type(value, struct mesh_sock_stats);
	MESH_PIN;
} sock_lb_stats SEC(".maps");

static __always_inline int is_loopback(__be32 addr)
{
	return (addr & bpf_htonl(0xff000000)) == bpf_htonl(0x7f000000);
}

/* A published port dialled by a socket of the node's own namespace. */
static __always_inline struct mesh_frontend *node_frontend(__be32 daddr, __be16 dport, __u8 proto)
{
	struct mesh_port_key pk = { .port = dport, .proto = proto };
	struct mesh_config *cfg = mesh_cfg();

	if (!cfg || !cfg->ingress_bridge_ifindex)
		return 0;
	if (!is_loopback(daddr) && daddr != cfg->underlay_addr && daddr != cfg->ingress_addr)
		return 0;
	return bpf_map_lookup_elem(&mesh_ports, &pk);
}

/* A VIP dialled by a socket of a task namespace, on one of the task's networks. */
static __always_inline struct mesh_frontend *task_frontend(const struct mesh_sock_netns *ns, __be32 daddr)
{
	struct mesh_vip_key vk = { .addr = daddr };
	struct mesh_frontend *fe;
	__u32 i;

	for (i = 0; i < MESH_SOCK_MAX_NETS; i++) {
		if (i >= ns->count)
			break;
		vk.vni = ns->vnis[i];
		fe = bpf_map_lookup_elem(&mesh_vips, &vk);
		if (fe)
			return fe;
	}
	return 0;
}

/* The frontend ctx dials, if ctx's socket is one this node serves. */
static __always_inline struct mesh_frontend *sock_frontend(struct bpf_sock_addr *ctx, __u8 proto)
{
	__u32 zero = 0;
	struct mesh_sock_config *sc = bpf_map_lookup_elem(&sock_lb_config, &zero);
	struct mesh_sock_netns *ns;
	__u64 netns;

	if (!sc || !(sc->flags & MESH_SOCK_READY))
		return 0;
	netns = bpf_get_netns_cookie(ctx);
	if (netns == sc->netns_cookie)
		return node_frontend(ctx->user_ip4, (__be16)ctx->user_port, proto);
	ns = bpf_map_lookup_elem(&sock_lb_netns, &netns);
	if (!ns)
		return 0;
	return task_frontend(ns, ctx->user_ip4);
}

static __always_inline void sock_count(__u32 svc_id, int connect)
{
	struct mesh_sock_stats *s = bpf_map_lookup_elem(&sock_lb_stats, &svc_id);

	if (!s)
		return;
	if (connect)
		s->connects++;
	else
		s->sendmsgs++;
}

/* Points ctx at a backend of the frontend it dials (if any), remembering what it dialled. */
static __always_inline int sock_translate(struct bpf_sock_addr *ctx, int connect)
{
	struct mesh_sock_rev_key rkey = {};
	struct mesh_sock_rev rev = {};
	struct mesh_frontend *fe;
	struct mesh_backend *be;
	__u32 hash, backend_id = 0;
	__be32 daddr = ctx->user_ip4;
	__be16 dport = (__be16)ctx->user_port;
	__u64 cookie;
	__u8 proto = ctx->protocol;

	if (proto != IPPROTO_TCP && proto != IPPROTO_UDP)
		return SOCK_ALLOW;
	fe = sock_frontend(ctx, proto);
	if (!fe || (fe->flags & MESH_FE_NO_BACKEND))
		return SOCK_ALLOW;
	cookie = bpf_get_socket_cookie(ctx);
	/* By socket and destination: a repeated connect() or every datagram of one socket to one
	 * frontend lands on the same backend. */
	hash = mix32((__u32)cookie ^ 0x9e3779b9);
	hash = mix32(hash ^ (__u32)(cookie >> 32));
	hash = mix32(hash ^ daddr);
	hash = mix32(hash ^ dport);
	be = maglev_pick(fe->ring_id, hash, &backend_id);
	if (!be)
		return SOCK_ALLOW;

	rkey.cookie = cookie;
	rkey.addr = be->addr;
	rkey.port = be->port ? be->port : dport;
	rev.addr = daddr;
	rev.port = dport;
	bpf_map_update_elem(&sock_lb_rev, &rkey, &rev, BPF_ANY);
	ctx->user_ip4 = rkey.addr;
	ctx->user_port = (__u32)rkey.port;
	sock_count(fe->svc_id, connect);
	return SOCK_ALLOW;
}

/* Shows ctx's peer (a backend this socket was sent to) as the address that was dialled. */
static __always_inline int sock_reverse(struct bpf_sock_addr *ctx)
{
	struct mesh_sock_rev_key rkey = {};
	struct mesh_sock_rev *rev;

	rkey.cookie = bpf_get_socket_cookie(ctx);
	rkey.addr = ctx->user_ip4;
	rkey.port = (__be16)ctx->user_port;
	rev = bpf_map_lookup_elem(&sock_lb_rev, &rkey);
	if (!rev)
		return SOCK_ALLOW;
	ctx->user_ip4 = rev->addr;
	ctx->user_port = (__u32)rev->port;
	return SOCK_ALLOW;
}

SEC("cgroup/connect4")
int sock_connect4(struct bpf_sock_addr *ctx)
{
	return sock_translate(ctx, 1);
}

SEC("cgroup/sendmsg4")
int sock_sendmsg4(struct bpf_sock_addr *ctx)
{
	return sock_translate(ctx, 0);
}

SEC("cgroup/recvmsg4")
int sock_recvmsg4(struct bpf_sock_addr *ctx)
{
	return sock_reverse(ctx);
}

SEC("cgroup/getpeername4")
int sock_getpeername4(struct bpf_sock_addr *ctx)
{
	return sock_reverse(ctx);
}

char LICENSE[] SEC("license") = "GPL";
