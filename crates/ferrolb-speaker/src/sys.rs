//! The speaker's only `unsafe`: glibc's heap, which runs on every node and so is kept small.

/// Hands freed heap pages back to the kernel. A reconcile after a burst of cluster changes
/// allocates and frees a lot; glibc keeps those pages otherwise, and the speaker runs on every
/// node, so its resident size matters more than the few milliseconds this takes.
pub(crate) fn release_free_memory() {
    // SAFETY: malloc_trim(3) has no preconditions.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Caps glibc's per-thread arenas at one: the speaker's few threads share the main heap
/// instead of each keeping pages of its own (measured: about 1 MiB less resident with 1,000 Services).
pub fn limit_malloc_arenas() {
    // SAFETY: mallopt(3) with a valid parameter, before other threads allocate.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
    }
}
