/* mesh_abi.h: the only ABI between meshd's kernel programs and user space.
 *
 * Every map key and value lives here, and nowhere else. Rules (Katran, aya):
 *  - fixed-width types only, byte order explicit (__be32/__be16 travel in network order);
 *  - no implicit padding: pad by hand, so C and Rust agree byte for byte;
 *  - flags are __u32, never bool;
 *  - every struct has a one-line comment and a Rust mirror in ebpf/src/abi.rs, listed in
 *    abi/layout.c so the build checks the two against each other.
 */
#ifndef MESH_ABI_H
#define MESH_ABI_H

#include <linux/types.h>

/* A packet and byte counter, per CPU in the maps that hold it. */
struct mesh_counter {
	__u64 packets;
	__u64 bytes;
};

#endif /* MESH_ABI_H */
