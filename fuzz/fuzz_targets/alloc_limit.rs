//! The fuzz targets' allocator: the system one, aborting (a crash libFuzzer records) on any
//! single allocation over 1 GiB, so that a reader allocating what a header claims is found even
//! where the OS would hand out untouched memory (libFuzzer's own -malloc_limit_mb needs a
//! sanitizer runtime, which stable Rust does not have).
use std::alloc::{GlobalAlloc, Layout, System};

const LIMIT: usize = 1 << 30;

struct Limited;

// SAFETY: forwards to the system allocator unchanged; only refuses (aborts) oversized requests.
unsafe impl GlobalAlloc for Limited {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if layout.size() > LIMIT {
            std::process::abort();
        }
        System.alloc(layout)
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if layout.size() > LIMIT {
            std::process::abort();
        }
        System.alloc_zeroed(layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if new_size > LIMIT {
            std::process::abort();
        }
        System.realloc(ptr, layout, new_size)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }
}

#[global_allocator]
static ALLOCATOR: Limited = Limited;
