/* maps.h: every map of the mesh, shared by xdp_mesh.c and tc_lb.c. All are pinned by name, so
 * the two objects (loaded with the same pin directory) share them, and a restarted meshd finds
 * its conntrack and tables where it left them. */
#ifndef MESH_MAPS_H
#define MESH_MAPS_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include "mesh_abi.h"

#define MESH_PIN __uint(pinning, LIBBPF_PIN_BY_NAME)

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct mesh_config);
	MESH_PIN;
} mesh_config SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MESH_MAX_PORTS);
	__type(key, struct mesh_port_key);
	__type(value, struct mesh_frontend);
	MESH_PIN;
} mesh_ports SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MESH_MAX_VIPS);
	__type(key, struct mesh_vip_key);
	__type(value, struct mesh_frontend);
	MESH_PIN;
} mesh_vips SEC(".maps");

/* Ring r occupies slots [r * MESH_RING_SIZE, (r + 1) * MESH_RING_SIZE); each holds a backend id. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, MESH_MAX_RINGS * MESH_RING_SIZE);
	__type(key, __u32);
	__type(value, __u32);
	MESH_PIN;
} mesh_rings SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, MESH_MAX_BACKENDS);
	__type(key, __u32);
	__type(value, struct mesh_backend);
	MESH_PIN;
} mesh_backends SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MESH_MAX_IFACES);
	__type(key, __u32);
	__type(value, struct mesh_iface);
	MESH_PIN;
} mesh_ifaces SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, MESH_CT_SIZE);
	__type(key, struct mesh_ct_key);
	__type(value, struct mesh_ct);
	MESH_PIN;
} mesh_ct SEC(".maps");

/* Fragmented datagrams: the translation of the first fragment, for the later ones (frag.h). */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, MESH_FRAG_SIZE);
	__type(key, struct mesh_frag_key);
	__type(value, struct mesh_ct);
	MESH_PIN;
} mesh_frags SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, MESH_MAX_SERVICES);
	__type(key, __u32);
	__type(value, struct mesh_svc_stats);
	MESH_PIN;
} mesh_stats SEC(".maps");

/* The cluster's nodes by underlay address: the only sources VXLAN is accepted from (empty: any). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MESH_MAX_NODES);
	__type(key, __be32);
	__type(value, struct mesh_node);
	MESH_PIN;
} mesh_nodes SEC(".maps");

/* Every overlay network's subnet (value: its VNI): a task's packet to one is never egress. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MESH_MAX_OVERLAY_NETS);
	__type(key, struct mesh_net_key);
	__type(value, __u32);
	MESH_PIN;
} mesh_overlay_nets SEC(".maps");

/* Egress flows (lib/egress.h), one entry per direction (MESH_CT_EGRESS, MESH_CT_EGRESS_REPLY). */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, MESH_EGRESS_CT_SIZE);
	__type(key, struct mesh_ct_key);
	__type(value, struct mesh_ct);
	MESH_PIN;
} mesh_egress_ct SEC(".maps");

/* Drops by reason (MESH_DROP_*), per CPU. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, MESH_DROP_REASONS);
	__type(key, __u32);
	__type(value, struct mesh_counter);
	MESH_PIN;
} mesh_drops SEC(".maps");

/* Addresses on natively routed networks (lib/native.h). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MESH_MAX_NATIVE);
	__type(key, __be32);
	__type(value, struct mesh_native);
	MESH_PIN;
} mesh_native SEC(".maps");

/* Local tasks' veths by their MAC on the ingress network (lib/deliver.h). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MESH_MAX_IFACES);
	__type(key, struct mesh_mac_key);
	__type(value, __u32);
	MESH_PIN;
} mesh_ingress_tasks SEC(".maps");

/* The cluster's other nodes by their underlay MAC (lib/native.h). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MESH_MAX_NODES);
	__type(key, struct mesh_mac_key);
	__type(value, __be32);
	MESH_PIN;
} mesh_node_macs SEC(".maps");

static __always_inline struct mesh_config *mesh_cfg(void)
{
	__u32 zero = 0;
	struct mesh_config *cfg = bpf_map_lookup_elem(&mesh_config, &zero);

	if (!cfg || !(cfg->flags & MESH_CFG_READY))
		return 0;
	return cfg;
}

static __always_inline void mesh_count(__u32 svc_id, __u64 bytes, __u64 conns)
{
	struct mesh_svc_stats *s = bpf_map_lookup_elem(&mesh_stats, &svc_id);

	if (!s)
		return;
	s->packets++;
	s->bytes += bytes;
	s->conns += conns;
}

static __always_inline void mesh_count_drop(__u32 reason, __u64 bytes)
{
	struct mesh_counter *c = bpf_map_lookup_elem(&mesh_drops, &reason);

	if (!c)
		return;
	c->packets++;
	c->bytes += bytes;
}

#endif
