/* maglev.h: the flow hash and the Maglev ring lookup. The rings themselves are filled by user
 * space (mesh_dataplane::maglev); the kernel only indexes them. */
#ifndef MESH_MAGLEV_H
#define MESH_MAGLEV_H

#include "maps.h"
#include "parse.h"

static __always_inline __u32 mix32(__u32 h)
{
	h ^= h >> 16;
	h *= 0x85ebca6b;
	h ^= h >> 13;
	h *= 0xc2b2ae35;
	h ^= h >> 16;
	return h;
}

/* A hash of the 5-tuple: the same flow always lands on the same slot. */
static __always_inline __u32 flow_hash(const struct pkt *p)
{
	__u32 h = mix32(p->saddr ^ 0x9e3779b9);

	h = mix32(h ^ p->daddr);
	h = mix32(h ^ (((__u32)p->sport << 16) | p->dport));
	return mix32(h ^ p->proto);
}

/* The backend in slot hash % MESH_RING_SIZE of ring ring_id, if it is valid. */
static __always_inline struct mesh_backend *maglev_pick(__u32 ring_id, __u32 hash, __u32 *backend_id)
{
	__u32 slot, *id;
	struct mesh_backend *be;

	if (ring_id >= MESH_MAX_RINGS)
		return 0;
	slot = ring_id * MESH_RING_SIZE + hash % MESH_RING_SIZE;
	id = bpf_map_lookup_elem(&mesh_rings, &slot);
	if (!id)
		return 0;
	*backend_id = *id;
	be = bpf_map_lookup_elem(&mesh_backends, id);
	if (!be || !(be->flags & MESH_BE_VALID))
		return 0;
	return be;
}

#endif
