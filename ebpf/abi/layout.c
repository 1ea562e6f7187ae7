/* Prints the size of every ABI struct and the offset and size of each field, one per line:
 * "<struct> <field> <offset> <size>" (field "-" for the struct itself). Built and run on the
 * host by build.rs; ebpf/src/abi.rs checks its Rust mirrors against the output. BPF and x86_64
 * lay out fixed-width types identically, which is what makes the host a faithful witness. */
#include <stddef.h>
#include <stdio.h>
#include "mesh_abi.h"

#define STRUCT(s) printf(#s " - 0 %zu\n", sizeof(struct s))
#define FIELD(s, f) printf(#s " " #f " %zu %zu\n", offsetof(struct s, f), sizeof(((struct s *)0)->f))
/* Constants are printed as "const <NAME> 0 <value>". */
#define CONST(c) printf("const " #c " 0 %lu\n", (unsigned long)(c))

int main(void)
{
	STRUCT(mesh_counter);
	FIELD(mesh_counter, packets);
	FIELD(mesh_counter, bytes);

	STRUCT(mesh_config);
	FIELD(mesh_config, underlay_addr);
	FIELD(mesh_config, ingress_addr);
	FIELD(mesh_config, underlay_ifindex);
	FIELD(mesh_config, ingress_bridge_ifindex);
	FIELD(mesh_config, ingress_vni);
	FIELD(mesh_config, underlay_mac);
	FIELD(mesh_config, bridge_mac);
	FIELD(mesh_config, flags);
	FIELD(mesh_config, ingress_vxlan_ifindex);
	FIELD(mesh_config, tcp_timeout_ns);
	FIELD(mesh_config, udp_timeout_ns);

	STRUCT(mesh_port_key);
	FIELD(mesh_port_key, port);
	FIELD(mesh_port_key, proto);
	FIELD(mesh_port_key, pad);

	STRUCT(mesh_vip_key);
	FIELD(mesh_vip_key, vni);
	FIELD(mesh_vip_key, addr);

	STRUCT(mesh_frontend);
	FIELD(mesh_frontend, svc_id);
	FIELD(mesh_frontend, ring_id);
	FIELD(mesh_frontend, flags);

	STRUCT(mesh_backend);
	FIELD(mesh_backend, addr);
	FIELD(mesh_backend, vtep);
	FIELD(mesh_backend, port);
	FIELD(mesh_backend, mac);
	FIELD(mesh_backend, flags);

	STRUCT(mesh_iface);
	FIELD(mesh_iface, vni);
	FIELD(mesh_iface, kind);
	FIELD(mesh_iface, mac);
	FIELD(mesh_iface, pad);

	STRUCT(mesh_ct_key);
	FIELD(mesh_ct_key, saddr);
	FIELD(mesh_ct_key, daddr);
	FIELD(mesh_ct_key, sport);
	FIELD(mesh_ct_key, dport);
	FIELD(mesh_ct_key, proto);
	FIELD(mesh_ct_key, kind);
	FIELD(mesh_ct_key, pad);

	STRUCT(mesh_ct);
	FIELD(mesh_ct, saddr);
	FIELD(mesh_ct, daddr);
	FIELD(mesh_ct, sport);
	FIELD(mesh_ct, dport);
	FIELD(mesh_ct, backend_id);
	FIELD(mesh_ct, svc_id);
	FIELD(mesh_ct, ifindex);
	FIELD(mesh_ct, dmac);
	FIELD(mesh_ct, pad);
	FIELD(mesh_ct, flags);
	FIELD(mesh_ct, pad2);
	FIELD(mesh_ct, last_seen);

	STRUCT(mesh_frag_key);
	FIELD(mesh_frag_key, saddr);
	FIELD(mesh_frag_key, daddr);
	FIELD(mesh_frag_key, id);
	FIELD(mesh_frag_key, proto);
	FIELD(mesh_frag_key, kind);

	STRUCT(mesh_svc_stats);
	FIELD(mesh_svc_stats, packets);
	FIELD(mesh_svc_stats, bytes);
	FIELD(mesh_svc_stats, conns);

	STRUCT(mesh_node);
	FIELD(mesh_node, flags);

	CONST(MESH_RING_SIZE);
	CONST(MESH_MAX_RINGS);
	CONST(MESH_MAX_BACKENDS);
	CONST(MESH_MAX_SERVICES);
	CONST(MESH_MAX_PORTS);
	CONST(MESH_MAX_VIPS);
	CONST(MESH_MAX_IFACES);
	CONST(MESH_CT_SIZE);
	CONST(MESH_FRAG_SIZE);
	CONST(MESH_VXLAN_PORT);
	CONST(MESH_CFG_READY);
	CONST(MESH_CFG_XDP);
	CONST(MESH_FE_NO_BACKEND);
	CONST(MESH_FE_HOST);
	CONST(MESH_BE_VALID);
	CONST(MESH_BE_LOCAL);
	CONST(MESH_IF_BRIDGE);
	CONST(MESH_IF_TASK);
	CONST(MESH_CT_INGRESS);
	CONST(MESH_CT_INGRESS_REPLY);
	CONST(MESH_CT_VIP);
	CONST(MESH_CT_VIP_REPLY);
	CONST(MESH_CT_INGRESS_RETURN);
	CONST(MESH_CTF_LOCAL);
	CONST(MESH_CTF_HAIRPIN);
	CONST(MESH_MAX_NODES);
	CONST(MESH_DROP_REASONS);
	CONST(MESH_DROP_VXLAN_SOURCE);
	CONST(MESH_CFG_NODES);
	CONST(MESH_NODE_MEMBER);
	CONST(MESH_CTF_SYN_ONLY);
	CONST(MESH_CTF_CLOSING);
	CONST(MESH_CTF_NATIVE);
	CONST(MESH_CT_SYN_TIMEOUT_SEC);
	CONST(MESH_CT_CLOSING_TIMEOUT_SEC);
	CONST(MESH_DROP_CT_FULL);
	CONST(MESH_DROP_SNAT_EXHAUSTED);
	/* Egress (lib/egress.h). */
	STRUCT(mesh_net_key);
	FIELD(mesh_net_key, prefixlen);
	FIELD(mesh_net_key, addr);
	CONST(MESH_CFG_EGRESS);
	CONST(MESH_MAX_OVERLAY_NETS);
	CONST(MESH_EGRESS_CT_SIZE);
	CONST(MESH_EGRESS_PORT_LOW);
	CONST(MESH_CT_EGRESS);
	CONST(MESH_CT_EGRESS_REPLY);
	CONST(MESH_CT_EGRESS_INBOUND);
	/* Socket-level balancing (sock_lb.c). */
	STRUCT(mesh_sock_config);
	FIELD(mesh_sock_config, netns_cookie);
	FIELD(mesh_sock_config, flags);
	FIELD(mesh_sock_config, pad);

	STRUCT(mesh_sock_netns);
	FIELD(mesh_sock_netns, vnis);
	FIELD(mesh_sock_netns, count);
	FIELD(mesh_sock_netns, pad);

	STRUCT(mesh_sock_rev_key);
	FIELD(mesh_sock_rev_key, cookie);
	FIELD(mesh_sock_rev_key, addr);
	FIELD(mesh_sock_rev_key, port);
	FIELD(mesh_sock_rev_key, pad);

	STRUCT(mesh_sock_rev);
	FIELD(mesh_sock_rev, addr);
	FIELD(mesh_sock_rev, port);
	FIELD(mesh_sock_rev, pad);

	STRUCT(mesh_sock_stats);
	FIELD(mesh_sock_stats, connects);
	FIELD(mesh_sock_stats, sendmsgs);

	CONST(MESH_SOCK_REV_SIZE);
	CONST(MESH_SOCK_MAX_NETNS);
	CONST(MESH_SOCK_MAX_NETS);
	CONST(MESH_SOCK_READY);
	/* Native routing (lib/native.h). */
	STRUCT(mesh_native);
	FIELD(mesh_native, vni);
	FIELD(mesh_native, ifindex);
	FIELD(mesh_native, node);
	FIELD(mesh_native, mac);
	FIELD(mesh_native, gw_mac);
	FIELD(mesh_native, flags);
	CONST(MESH_MAX_NATIVE);
	CONST(MESH_NATIVE_LOCAL);
	CONST(MESH_NATIVE_DIRECT);
	/* Delivery into local tasks' veths (lib/deliver.h). */
	STRUCT(mesh_mac_key);
	FIELD(mesh_mac_key, mac);
	FIELD(mesh_mac_key, pad);
	return 0;
}
