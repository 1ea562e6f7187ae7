//! Compiles every `ebpf/*.c` into a BPF object with clang, and builds and runs the ABI layout
//! probe (`abi/layout.c`, compiled for the host) so that the Rust mirrors can be checked against
//! the C structs.

use std::path::{Path, PathBuf};
use std::process::Command;

const CLANG: &str = "clang-19";
const INSTALL_HINT: &str = "clang-19 not found: install it with `apt-get install -y clang-19 libbpf-dev` (or run ./scripts/deps.sh)";

fn main() {
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
    let out = PathBuf::from(std::env::var("OUT_DIR").unwrap());
    println!("cargo:rerun-if-changed=include");
    println!("cargo:rerun-if-changed=lib");
    println!("cargo:rerun-if-changed=abi");

    // One line the user can act on, instead of a page of compiler errors.
    if Command::new(CLANG).arg("--version").output().is_err() {
        fail(INSTALL_HINT);
    }
    if !Path::new("/usr/include/bpf/bpf_helpers.h").exists() {
        fail(
            "libbpf-dev not found: install it with `apt-get install -y libbpf-dev` (or run ./scripts/deps.sh)",
        );
    }

    let mut sources: Vec<PathBuf> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "c"))
        .collect();
    sources.sort();
    for src in &sources {
        println!("cargo:rerun-if-changed={}", src.display());
        let obj = out.join(src.file_stem().unwrap()).with_extension("o");
        run(Command::new(CLANG)
            .args(["-O2", "-g", "-target", "bpf", "-Wall", "-Werror"])
            .arg("-I")
            .arg(root.join("include"))
            .arg("-I")
            .arg(&root)
            .args(["-I", "/usr/include/x86_64-linux-gnu", "-c"])
            .arg(src)
            .arg("-o")
            .arg(&obj));
    }

    // The layout probe: sizes and offsets of every ABI struct as the C compiler lays them out.
    let probe = out.join("abi_layout_probe");
    run(Command::new(CLANG)
        .args(["-O0", "-Wall", "-Werror"])
        .arg("-I")
        .arg(root.join("include"))
        .args(["-I", "/usr/include/x86_64-linux-gnu"])
        .arg(root.join("abi/layout.c"))
        .arg("-o")
        .arg(&probe));
    let layout = Command::new(&probe).output().expect("run abi layout probe");
    assert!(layout.status.success(), "abi layout probe failed");
    std::fs::write(out.join("abi_layout.txt"), layout.stdout).unwrap();
}

fn run(cmd: &mut Command) {
    let output = cmd
        .output()
        .unwrap_or_else(|e| fail(&format!("{INSTALL_HINT} ({e})")));
    if !output.status.success() {
        // Compiler diagnostics go to the build's stderr, shown by cargo on failure.
        eprintln!("{}", String::from_utf8_lossy(&output.stderr));
        fail(&format!("{cmd:?} failed (compiler output above)"));
    }
}

/// Fails the build with one error line from cargo.
fn fail(msg: &str) -> ! {
    println!("cargo::error={msg}");
    std::process::exit(0)
}
