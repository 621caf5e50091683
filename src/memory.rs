//! Memory: the binaries allocate with mimalloc, which returns freed memory to the system (the
//! 19 MiB blocks of password checks, the buffers of a burst). Two options keep an idle server
//! small: arena memory is committed when used rather than up front, and freed memory is purged at
//! once instead of after a delay.

/// `mi_option_arena_eager_commit` in mimalloc's `mi_option_e`.
const ARENA_EAGER_COMMIT: libmimalloc_sys::mi_option_t = 4;
/// `mi_option_purge_delay` in mimalloc's `mi_option_e` (milliseconds; 0 purges at once).
const PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Sets mimalloc's options. mimalloc reads them when it creates its first arena, which happens
/// before `main` (the runtime allocates while it starts), so `use_mimalloc!` also runs this from
/// the ELF constructor table, before any Rust code allocates. Calling it again is harmless.
pub fn configure_allocator() {
    // SAFETY: `mi_option_set` only stores an integer in mimalloc's option table; both option ids
    // are valid members of `mi_option_e` in the bundled mimalloc version.
    unsafe {
        libmimalloc_sys::mi_option_set(ARENA_EAGER_COMMIT, 0);
        libmimalloc_sys::mi_option_set(PURGE_DELAY, 0);
    }
}

/// Returns the memory this thread freed to the system now. A password check allocates 19 MiB on
/// a blocking thread and frees it; without this, the thread's heap keeps the pages and a burst of
/// sign-ins leaves the resident set hundreds of MiB high. Harmless when mimalloc is not the global
/// allocator (tests): its own heap is then empty.
pub fn release_thread_memory() {
    // SAFETY: `mi_collect` only walks and frees mimalloc's own bookkeeping for this thread.
    unsafe { libmimalloc_sys::mi_collect(true) }
}

/// Makes mimalloc the binary's global allocator and configures it before the first allocation.
/// One line at the top of every binary: `mcp_oauth::use_mimalloc!();`.
#[macro_export]
macro_rules! use_mimalloc {
    () => {
        /// mimalloc returns freed memory to the system, which keeps the resident set small after
        /// bursts of password checks (each takes 19 MiB for a moment).
        #[global_allocator]
        static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

        /// Runs before `main` and before the runtime's first allocation.
        #[cfg(target_os = "linux")]
        #[used]
        #[unsafe(link_section = ".init_array")]
        static CONFIGURE_ALLOCATOR: extern "C" fn() = {
            extern "C" fn configure() {
                $crate::memory::configure_allocator()
            }
            configure
        };
    };
}
