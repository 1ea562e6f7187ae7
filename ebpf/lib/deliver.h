/* deliver.h: a frame for a local task out of the ingress VXLAN device (a published-port flow
 * another node took) goes straight into the task's veth: tc_bridge_in redirects it there by
 * its destination MAC (mesh_ingress_tasks, written by user space as it serves each task veth)
 * instead of letting it cross the ingress bridge, as the node that took it already skips the
 * bridge on the way out. Anything else (ARP, the bridge's own frames, a MAC not known or whose
 * veth is not a task's of the ingress network any more) goes on through the bridge. */
#ifndef MESH_DELIVER_H
#define MESH_DELIVER_H

#include "ctx.h"
#include "maps.h"

/* tc_bridge_in's part for skb, a parsed IPv4 frame that is not a reply: TC_ACT_OK (on through
 * the bridge), or the redirect into the task's veth. */
static __always_inline int deliver_to_ingress_task(struct __sk_buff *skb, const struct mesh_config *cfg)
{
	struct ethhdr *eth = ctx_data(skb);
	struct mesh_mac_key key = {};
	struct mesh_iface *ifc;
	__u32 *ifindex;

	if (!cfg->ingress_vxlan_ifindex || skb->ifindex != cfg->ingress_vxlan_ifindex ||
	    (void *)(eth + 1) > ctx_data_end(skb))
		return TC_ACT_OK;
	__builtin_memcpy(key.mac, eth->h_dest, ETH_ALEN);
	ifindex = bpf_map_lookup_elem(&mesh_ingress_tasks, &key);
	if (!ifindex)
		return TC_ACT_OK;
	ifc = bpf_map_lookup_elem(&mesh_ifaces, ifindex);
	if (!ifc || ifc->kind != MESH_IF_TASK || ifc->vni != cfg->ingress_vni)
		return TC_ACT_OK;
	return bpf_redirect(*ifindex, 0);
}

#endif
