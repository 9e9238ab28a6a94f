//! The process allocator: mimalloc, called the cheapest way for each request. The `mimalloc`
//! crate's allocator asks for every block by alignment (`mi_malloc_aligned`), whose fast path
//! only works when the next free block happens to be aligned and which otherwise takes the
//! generic aligned path; nearly every Rust allocation asks for an alignment that a plain
//! `mi_malloc` already guarantees (mimalloc aligns every block of 16 bytes or more to 16, and
//! smaller blocks to their size class). [`Allocator`] calls `mi_malloc` for those and the
//! aligned functions only for the rest. A proxied request makes some ninety allocations, most
//! in the HTTP engine.
//!
//! [`commit_arenas_on_use`] turns off mimalloc's eager commit of its arenas, which on a
//! system with overcommit keeps about 9 MB more of an idle gateway resident (measured: 12 MB
//! of anonymous memory against 3.5 MB, `VmRSS` 31 MB against 21 MB, cache off and idle).

use std::alloc::{GlobalAlloc, Layout};
use std::ffi::{c_int, c_long, c_void};

use libmimalloc_sys as mi;

/// The alignment every `mi_malloc` block of at least that size has (`MI_MAX_ALIGN_SIZE`).
const MI_MAX_ALIGN: usize = 16;

/// `mi_option_arena_eager_commit` of mimalloc's `mi_option_t` (`mimalloc.h`, v2).
const MI_OPTION_ARENA_EAGER_COMMIT: c_int = 4;

extern "C" {
    /// mimalloc's `mi_option_set` (`libmimalloc-sys` declares it only with its `extended`
    /// feature).
    fn mi_option_set(option: c_int, value: c_long);
}

/// Makes mimalloc commit its arenas' memory as it is used, not all at once when an arena is
/// reserved (its default on systems with overcommit). Takes effect for arenas reserved after
/// the call, so the binary calls it before `main` (see `src/main.rs`).
pub fn commit_arenas_on_use() {
    // SAFETY: setting an option is allowed at any time; this one is read when an arena is
    // reserved.
    unsafe { mi_option_set(MI_OPTION_ARENA_EAGER_COMMIT, 0) }
}

/// mimalloc as the global allocator (see the module's documentation).
pub struct Allocator;

/// True when a plain mimalloc block of `size` bytes is aligned enough for `align`: the
/// alignment is at most [`MI_MAX_ALIGN`] and the size at least the alignment (a block is
/// aligned to its size class up to 16).
fn plain_is_aligned(size: usize, align: usize) -> bool {
    align <= MI_MAX_ALIGN && align <= size
}

// SAFETY: every block comes from mimalloc, with at least the layout's size and alignment (by
// `plain_is_aligned`, or from the aligned functions), and goes back to it with `mi_free`.
unsafe impl GlobalAlloc for Allocator {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if plain_is_aligned(layout.size(), layout.align()) {
            mi::mi_malloc(layout.size()).cast()
        } else {
            mi::mi_malloc_aligned(layout.size(), layout.align()).cast()
        }
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if plain_is_aligned(layout.size(), layout.align()) {
            mi::mi_zalloc(layout.size()).cast()
        } else {
            mi::mi_zalloc_aligned(layout.size(), layout.align()).cast()
        }
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, _layout: Layout) {
        mi::mi_free(ptr.cast::<c_void>());
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if plain_is_aligned(new_size, layout.align()) {
            mi::mi_realloc(ptr.cast::<c_void>(), new_size).cast()
        } else {
            mi::mi_realloc_aligned(ptr.cast::<c_void>(), new_size, layout.align()).cast()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Allocates, writes, grows and frees blocks of `size` and `align` through [`Allocator`],
    /// checking every address against the alignment asked for.
    fn round_trip(size: usize, align: usize, zeroed: bool) {
        let layout = Layout::from_size_align(size, align).expect("layout");
        // SAFETY: the layouts are non-zero in size; each block is freed once, with its layout.
        unsafe {
            let block = if zeroed {
                Allocator.alloc_zeroed(layout)
            } else {
                Allocator.alloc(layout)
            };
            assert!(!block.is_null());
            assert_eq!(block as usize % align, 0, "size {size}, align {align}");
            if zeroed {
                assert!(std::slice::from_raw_parts(block, size)
                    .iter()
                    .all(|&b| b == 0));
            }
            block.write_bytes(0xa5, size);
            let grown = Allocator.realloc(block, layout, size * 3);
            assert_eq!(grown as usize % align, 0, "grown {size}, align {align}");
            assert!(std::slice::from_raw_parts(grown, size)
                .iter()
                .all(|&b| b == 0xa5));
            let shrunk = Allocator.realloc(
                grown,
                Layout::from_size_align(size * 3, align).expect("layout"),
                size.div_ceil(2),
            );
            assert_eq!(shrunk as usize % align, 0, "shrunk {size}, align {align}");
            Allocator.dealloc(
                shrunk,
                Layout::from_size_align(size.div_ceil(2), align).expect("layout"),
            );
        }
    }

    #[test]
    fn every_block_has_the_alignment_asked_for() {
        for align in [1, 2, 4, 8, 16, 32, 64, 4096] {
            for size in [1, 3, 8, 15, 16, 17, 24, 100, 1024, 70_000, 5 << 20] {
                round_trip(size, align, false);
                round_trip(size, align, true);
            }
        }
    }

    #[test]
    fn only_alignments_a_plain_block_has_take_the_plain_path() {
        assert!(plain_is_aligned(16, 16) && plain_is_aligned(24, 8) && plain_is_aligned(1, 1));
        assert!(!plain_is_aligned(8, 16) && !plain_is_aligned(64, 32) && !plain_is_aligned(0, 1));
    }
}
