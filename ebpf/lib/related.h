/* related.h: packets that belong to a translated flow without being parsed as one of its
 * packets (netfilter's "related"): ICMP errors about the flow (PARSE_ICMP, icmp.h) and the later
 * fragments of its datagrams (PARSE_FRAG, frag.h). Each program asks for the flow kind it
 * translates; the caller then delivers the packet as it delivers the flow's own. A return entry
 * (MESH_CT_INGRESS_RETURN, clientip.h) is followed the same way: icmp_flow and frag_flow check
 * only its age (it has no backend of the node's). */
#ifndef MESH_RELATED_H
#define MESH_RELATED_H

#include "icmp.h"
#include "frag.h"

/* Finds the translation of the packet p (parsed as `parsed`) for flows of kind `kind`:
 * LB_FORWARD with *ct (and *quote, the ICMP error's quoted packet), or LB_PASS. */
static __always_inline int related_flow(CTX *ctx, const struct mesh_config *cfg, __u32 l3off, int parsed,
					const struct pkt *p, __u8 kind, struct mesh_ct *ct, struct pkt *quote)
{
	if (parsed == PARSE_ICMP)
		return !icmp_quote(ctx, l3off, quote) && icmp_flow(cfg, quote, kind, ct) == LB_FORWARD ? LB_FORWARD :
													 LB_PASS;
	if (parsed == PARSE_FRAG)
		return frag_flow(p, kind, ct) ? LB_FORWARD : LB_PASS;
	return LB_PASS;
}

/* Applies the translation related_flow found. Returns 0, or -1 if the packet is too short. */
static __always_inline int related_nat(CTX *ctx, __u32 l3off, int parsed, const struct pkt *p,
				       const struct pkt *quote, const struct mesh_ct *ct)
{
	if (parsed == PARSE_ICMP)
		return icmp_nat(ctx, l3off, quote, ct);
	return ctx_nat_l3(ctx, l3off, p->saddr, ct->saddr, p->daddr, ct->daddr);
}

#endif
