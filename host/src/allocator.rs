//! The allocator's settings for training. `tunas` and the supernet bench allocate with mimalloc
//! (a step allocates and frees hundreds of activation-sized blocks; plain malloc spent 15–30%
//! of a step in page faults). By default mimalloc still returns freed memory to the kernel
//! after a delay (1 s), and the next step faults it back in, page by page, zeroed by the
//! kernel: 15% of a forward-only pass at width ×0.5, batch 128 was `clear_page`. Keeping it
//! mapped made the training step 7% faster there (side by side, three runs each: 530 vs 570 ms)
//! at the same peak RSS: a training run's memory does not shrink between steps anyway.

/// mimalloc's `mi_option_purge_delay` (the same number in its v2 and v3 headers).
const PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Tells mimalloc never to return freed memory to the kernel (purge delay −1), unless the user
/// set `MIMALLOC_PURGE_DELAY` (which mimalloc reads itself). Call once, first thing in `main`,
/// before any thread starts.
pub fn keep_freed_memory() {
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
        // SAFETY: sets a plain integer option; mimalloc documents `mi_option_set` as not
        // thread-safe, and this runs before the program starts any thread.
        #[allow(unsafe_code)]
        unsafe {
            libmimalloc_sys::mi_option_set(PURGE_DELAY, -1);
        }
    }
}

/// mimalloc's current purge delay (ms; −1: never).
pub fn purge_delay() -> i64 {
    // SAFETY: reads an integer option.
    #[allow(unsafe_code)]
    let v = unsafe { libmimalloc_sys::mi_option_get(PURGE_DELAY) };
    // `c_long` is 32 bits on some platforms.
    #[allow(clippy::useless_conversion)]
    i64::from(v)
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_option_number_is_mimallocs_purge_delay() {
        if std::env::var_os("MIMALLOC_PURGE_DELAY").is_some() {
            return;
        }
        // mimalloc v3 (the crate's default) purges after 1,000 ms; no other option of it
        // defaults to 1,000.
        assert_eq!(super::purge_delay(), 1000);
        super::keep_freed_memory();
        assert_eq!(super::purge_delay(), -1);
    }
}
