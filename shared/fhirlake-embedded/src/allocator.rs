//! The allocator of the fhirlake processes: mimalloc, told to keep freed memory a second
//! before returning it to the operating system.
//!
//! A bulk import allocates and frees a batch's index entries (hundreds of megabytes) every
//! few seconds. mimalloc's default purge delay of 10 ms handed those pages back between
//! batches and took them again zero-filled: a fifth of the import's CPU in the kernel's page
//! clearing (measured with `jobs_bench`). With a one-second delay the pages are reused, and an
//! idle process still returns its memory.

pub use mimalloc::MiMalloc;

/// `mi_option_purge_delay` in mimalloc 2's `mi_option_e` (`mimalloc.h`); its default is 10 ms.
const PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;
/// How long freed memory stays with the process, in milliseconds.
const PURGE_DELAY_MS: std::ffi::c_long = 1000;

/// Applies the settings above; call it first thing in `main`. An operator's own
/// `MIMALLOC_PURGE_DELAY` (mimalloc reads its `MIMALLOC_` variables itself) is left in force.
pub fn configure() {
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_some() {
        return;
    }
    // SAFETY: mi_option_set only stores a number in mimalloc's option table; any option id and
    // value are accepted, and it is safe to call from any thread at any time.
    unsafe { libmimalloc_sys::mi_option_set(PURGE_DELAY, PURGE_DELAY_MS) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_option_set_is_the_purge_delay() {
        // The purge delay is the option whose default is 10 (ms), after the eager-commit delay.
        // SAFETY: reading an option is a plain load from mimalloc's option table.
        let before = unsafe { libmimalloc_sys::mi_option_get(PURGE_DELAY) };
        assert_eq!(before, 10, "mimalloc's option {PURGE_DELAY} is not the purge delay (default 10 ms)");
        assert_eq!(PURGE_DELAY, libmimalloc_sys::mi_option_eager_commit_delay + 1);
        configure();
        assert_eq!(unsafe { libmimalloc_sys::mi_option_get(PURGE_DELAY) }, PURGE_DELAY_MS);
    }
}
