//! Links the server binaries with packed relative relocations (`-z pack-relative-relocs`, the
//! ELF `DT_RELR` table) where the toolchain and the C library support them.
//!
//! A position-independent Rust binary holds tens of thousands of relative relocations (every
//! pointer in a static table: vtables, string slices), 24 bytes each in `.rela.dyn`, which the
//! loader reads whole at every start; those pages stay in the process's resident set. Packed,
//! the table takes a few KiB instead of most of a MiB: the `auth-server` idles about 2 MiB
//! smaller (docs/BENCHMARKS.md, "Memory"). The binaries stay position-independent.
//!
//! GNU ld has the option since 2.38 and glibc reads the table since 2.36. A toolchain without
//! them links as before: a small program is linked with the option (warnings fatal, so an
//! older linker that would ignore it says no) and run, and only when both succeed are the
//! binaries linked with it. A binary linked with it needs glibc 2.36 or later where it runs, as
//! it would for the glibc it was built against (the `Dockerfile` builds and runs on Debian 12,
//! which has 2.36).

use std::path::PathBuf;
use std::process::Command;

const FLAG: &str = "-Wl,-z,pack-relative-relocs";

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=RUSTC_LINKER");
    if packs_relative_relocations() {
        println!("cargo:rustc-link-arg-bins={FLAG}");
    }
}

/// Links and runs a probe with [`FLAG`]: only on Linux with glibc, and when building for the
/// machine that builds (the probe must run here).
fn packs_relative_relocations() -> bool {
    let target = std::env::var("TARGET").unwrap_or_default();
    let host = std::env::var("HOST").unwrap_or_default();
    let Some(out_dir) = std::env::var_os("OUT_DIR").map(PathBuf::from) else {
        return false;
    };
    if target != host || !target.ends_with("-linux-gnu") {
        return false;
    }
    let source = out_dir.join("relr_probe.c");
    let probe = out_dir.join("relr_probe");
    if std::fs::write(&source, "int main(void) { return 0; }\n").is_err() {
        return false;
    }
    let linker = std::env::var("RUSTC_LINKER").unwrap_or_else(|_| "cc".into());
    let linked = Command::new(linker)
        .arg(&source)
        .arg("-o")
        .arg(&probe)
        .args([FLAG, "-Wl,--fatal-warnings"])
        .output()
        .is_ok_and(|out| out.status.success());
    linked && Command::new(&probe).status().is_ok_and(|s| s.success())
}
