//! The global allocator on Linux: jemalloc ([`tikv_jemallocator`]).
//!
//! glibc's malloc was the daemon's largest single cost with many listeners:
//! its arenas are shared behind locks, so the runtime's threads contended
//! on every small allocation a run makes, and its per-thread cache is a
//! few entries per size. jemalloc's thread caches take those without a
//! lock. Its configuration (`malloc_conf`, below) keeps resident memory
//! following what is live: one arena, and freed pages handed back to the
//! kernel at once (no decay), which costs some CPU per event and keeps the
//! soak's peak lower than glibc's. Measured in the README ("jemalloc").
//! An operator can still override it with `_RJEM_MALLOC_CONF`.

#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// Read by jemalloc when it starts (the prefixed build's `malloc_conf`).
#[allow(non_upper_case_globals)]
#[export_name = "_rjem_malloc_conf"]
#[used]
static malloc_conf: &[u8; 67] =
    b"narenas:1,background_thread:true,dirty_decay_ms:0,muzzy_decay_ms:0\0";
