/* Prints the size of every ABI struct and the offset and size of each field, one per line:
 * "<struct> <field> <offset> <size>" (field "-" for the struct itself). Built and run on the
 * host by build.rs; ebpf/src/abi.rs checks its Rust mirrors against the output. BPF and x86_64
 * lay out fixed-width types identically, which is what makes the host a faithful witness. */
#include <stddef.h>
#include <stdio.h>
#include "mesh_abi.h"

#define STRUCT(s) printf(#s " - 0 %zu\n", sizeof(struct s))
#define FIELD(s, f) printf(#s " " #f " %zu %zu\n", offsetof(struct s, f), sizeof(((struct s *)0)->f))

int main(void)
{
	STRUCT(mesh_counter);
	FIELD(mesh_counter, packets);
	FIELD(mesh_counter, bytes);
	return 0;
}
