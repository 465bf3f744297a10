//! Tunes glibc's allocator for a long-running daemon with bounded, bursty
//! buffers: resident memory then follows what is live, not the peak.
//!
//! By default glibc (1) gives each thread that contends its own arena, up
//! to eight per core, each keeping the memory freed into it, and (2) raises
//! its mmap threshold to the size of any large block freed, so that after
//! the first large `GET /events` body every later body, bind buffer and
//! batch is carved from the heap and stays resident after it is freed. Both
//! are set here instead: two arenas (a handful of runtime threads, one
//! allocation-heavy path each at a time), and blocks of 128 KiB or more
//! mapped on their own, so they go back to the kernel as soon as they are
//! freed. Measured on the benchmark's 300,000-event soak: see the README.
//!
//! A long run also hands the heap's free pages back once a second
//! ([`trim_periodically`]): what bursts freed stays mapped otherwise, in
//! the middle of an arena where the first two settings cannot reach it.
//!
//! On Linux the daemon's own allocations go to jemalloc (`allocator.rs`);
//! these settings still govern glibc's heap, which the C libraries linked
//! in (SQLite) allocate from.
//!
//! Elsewhere (musl, macOS) nothing is done.

/// Applies the settings. Call once, first thing in `main`, before any
/// thread starts.
pub fn tune() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        const ARENAS: libc::c_int = 2;
        const MMAP_THRESHOLD: libc::c_int = 128 * 1024;
        // SAFETY: mallopt only sets allocator parameters; it is called
        // before any other thread exists, as glibc asks. A refusal (0)
        // leaves glibc's defaults, which are correct, only larger.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, ARENAS);
            libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD);
        }
    }
}

/// How often [`trim_periodically`] trims.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const TRIM_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// Starts a thread that returns the heap's free pages to the kernel every
/// second (`malloc_trim`): for `run`, whose bursts free more than they
/// keep (the soak's RSS peak 35.0 → 29.8 MB, README).
pub fn trim_periodically() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let spawned = std::thread::Builder::new()
            .name("malloc-trim".into())
            .stack_size(64 * 1024)
            .spawn(|| loop {
                std::thread::sleep(TRIM_EVERY);
                // SAFETY: malloc_trim only releases free memory; it takes
                // the arenas' locks itself.
                unsafe {
                    libc::malloc_trim(0);
                }
            });
        if let Err(e) = spawned {
            tracing::debug!(error = %e, "Cannot start the heap trimmer; free memory stays mapped longer");
        }
    }
}
