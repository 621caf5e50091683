//! Links the server binaries with packed relative relocations (`-z pack-relative-relocs`, the
//! ELF `DT_RELR` table) where the toolchain and the C library support them.
//!
//! A position-independent Rust binary holds tens of thousands of relative relocations (every
//! pointer in a static table: vtables, string slices), 24 bytes each in `.rela.dyn`, which the
//! loader reads whole at every start; those pages stay in the process's resident set. Packed,
//! the table takes a few KiB instead of most of a MiB: the `auth-server` idles about 2 MiB
//! smaller (docs/BENCHMARKS.md, "Memory"). The binaries stay position-independent.
//!
//! The linkers have the option (GNU ld since 2.38, LLD since 15) and glibc reads the table
//! since 2.36. A small program is linked with it (warnings fatal, so a linker that would ignore
//! it says no) and run; only when both succeed are the binaries linked with it, so a toolchain
//! without it links as before. The probe links with `cc` (or `RUSTC_LINKER`), which may not be
//! the linker rustc uses (LLD, on x86-64); a linker given by hand that lacks the option (gold)
//! fails the build, and `MCP_OAUTH_PLAIN_RELOCATIONS=1` links without it.
//!
//! A binary linked with it needs glibc 2.36 or later where it runs (without, 2.34 would do). To
//! build one for an older system on a newer one, set `MCP_OAUTH_PLAIN_RELOCATIONS=1`. The
//! `Dockerfile` builds and runs on Debian 12, which has 2.36.
//!
//! It also rebuilds the crate when a migration changes (`migrations/`).

use std::path::PathBuf;
use std::process::Command;

const FLAG: &str = "-Wl,-z,pack-relative-relocs";

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    // The migrations are embedded by `sqlx::migrate!`, which cannot ask the compiler to watch
    // them: a migration added with no Rust change must still rebuild the crate.
    println!("cargo:rerun-if-changed=migrations");
    println!("cargo:rerun-if-env-changed=MCP_OAUTH_PLAIN_RELOCATIONS");
    let plain = std::env::var_os("MCP_OAUTH_PLAIN_RELOCATIONS").is_some_and(|v| v != "0");
    if !plain && packs_relative_relocations() {
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
