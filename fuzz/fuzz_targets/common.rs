//! What the fuzz targets share: the allocator that turns an allocation over 1 GiB into a crash
//! (libFuzzer's own -malloc_limit_mb needs a sanitizer runtime, which stable Rust does not have,
//! and the OS would hand out untouched memory without complaint), and a scratch folder per
//! process for targets that read files.
use std::alloc::{GlobalAlloc, Layout, System};
use std::path::PathBuf;
use std::sync::OnceLock;

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

/// `<tmp>/samix-fuzz-<name>-<pid>`, created once.
#[allow(dead_code)]
pub fn scratch(name: &str) -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("samix-fuzz-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("scratch folder");
        dir
    })
}
