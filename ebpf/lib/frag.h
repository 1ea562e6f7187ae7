/* frag.h: fragmented UDP to and from translated flows (Cilium's ipv4_frag habit). Only a
 * datagram's first fragment has the UDP header, so only it can be balanced or matched in
 * conntrack; the program that translates it records, under (source, destination, IP id,
 * protocol, direction) as it arrived, the translation it applied, and the later fragments (no
 * L4 header) look that up and get the same addresses (ports and the UDP checksum are in the
 * first fragment alone). A later fragment without an entry (it overtook its first fragment, or
 * the entry is gone) is not known to be ours: it passes to the kernel untouched, as any
 * fragment to the node's own addresses (VXLAN's outer fragments, for one) must. */
#ifndef MESH_FRAG_H
#define MESH_FRAG_H

#include "conntrack.h"

/* How long a first fragment's translation serves the rest (the kernel's own reassembly
 * timeout, net.ipv4.ipfrag_time). */
#define FRAG_TIMEOUT_NS (30 * NS_PER_SEC)

static __always_inline void frag_key_of(struct mesh_frag_key *k, const struct pkt *p, __u8 kind)
{
	k->saddr = p->saddr;
	k->daddr = p->daddr;
	k->id = p->ip_id;
	k->proto = p->proto;
	k->kind = kind;
}

/* The first fragment p (of a flow of kind `kind`) was translated with ct: so will the rest be. */
static __always_inline void frag_record(const struct pkt *p, __u8 kind, const struct mesh_ct *ct)
{
	struct mesh_frag_key key;
	struct mesh_ct v = *ct;

	frag_key_of(&key, p, kind);
	v.last_seen = bpf_ktime_get_ns();
	bpf_map_update_elem(&mesh_frags, &key, &v, BPF_ANY);
}

/* The translation of the later fragment p's first fragment, while fresh and while its backend
 * still has the address (the flow's destination forward, the fragment's source in replies). */
static __always_inline int frag_flow(const struct pkt *p, __u8 kind, struct mesh_ct *out)
{
	int forward = kind == MESH_CT_INGRESS || kind == MESH_CT_VIP;
	struct mesh_frag_key key;
	struct mesh_backend *be;
	struct mesh_ct *v;
	__u32 id;

	frag_key_of(&key, p, kind);
	v = bpf_map_lookup_elem(&mesh_frags, &key);
	if (!v || bpf_ktime_get_ns() - v->last_seen > FRAG_TIMEOUT_NS)
		return 0;
	/* A return entry (clientip.h) has no backend of this node's. */
	if (kind == MESH_CT_INGRESS_RETURN) {
		*out = *v;
		return 1;
	}
	id = v->backend_id;
	be = bpf_map_lookup_elem(&mesh_backends, &id);
	/* A task's answer to a published port's client may come from its address on another
	 * network (an unbound UDP socket, clientip.h): only the backend's validity counts there. */
	if (!be || !(be->flags & MESH_BE_VALID) ||
	    (kind != MESH_CT_INGRESS_REPLY && be->addr != (forward ? v->daddr : p->saddr)))
		return 0;
	*out = *v;
	return 1;
}

#endif
