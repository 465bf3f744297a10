//! The global allocator on Linux: jemalloc ([`tikv_jemallocator`]).
//!
//! glibc's malloc was the daemon's largest single cost with many listeners:
//! its arenas are shared behind locks, so the runtime's threads contended
//! on every small allocation a run makes, and its per-thread cache is a
//! few entries per size. jemalloc's thread caches take those without a
//! lock. Its configuration (`malloc_conf`, below) keeps resident memory
//! following what is live: one arena; allocations of 256 KiB and more (a
//! chunk's bodies and batches, the database's statement buffers) in
//! jemalloc's oversize arena, their pages handed back to the kernel as
//! they are freed; smaller ones' empty pages handed back after 100 ms, by
//! the background thread. Handing every page back at once (no decay, the
//! earlier setting) kept the soak's peak as low but cost a third of the
//! daemon's CPU on a busy pipeline: each small page freed was an
//! `madvise`, and with it a TLB shootdown interrupting every thread.
//! Measured in the README ("jemalloc").
//! An operator can still override it with `_RJEM_MALLOC_CONF`.

#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// Read by jemalloc when it starts (the prefixed build's `malloc_conf`).
#[allow(non_upper_case_globals)]
#[export_name = "_rjem_malloc_conf"]
#[used]
static malloc_conf: &[u8; 95] =
    b"narenas:1,background_thread:true,dirty_decay_ms:100,muzzy_decay_ms:0,oversize_threshold:262144\0";
