//! Process-wide tuning of the host (CPU) memory allocator, for programs that train on the CPU,
//! and the process's peak memory (what `samix bench` reports on the CPU).
//! Only a binary should call `keep_freed_memory`: it changes malloc's behaviour for the whole process.

/// Keeps glibc from handing freed tensor memory back to the OS after every step. A training step
/// frees and re-allocates tens of MB of activations; by default glibc serves blocks above a
/// (dynamic) threshold with fresh `mmap`s and trims the heap on free, so each step pays page faults
/// on memory it just released. Serving blocks up to 32 MiB from the heap and never trimming made
/// the ResNet-18 CIFAR step (batch 100) ~12% faster on the 2-core CPU (forward 358–383 → 310–314 ms,
/// backward + SGD 640–670 → ~600 ms; PyTorch eager: 325 / 605 ms). The cost: the process keeps its
/// peak heap size. No-op on other C libraries.
pub fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator parameters; it is called before any other threads run.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 * 1024 * 1024);
        libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX);
    }
}

/// Resets the process's peak resident set size to its current size (Linux: `5` into
/// /proc/self/clear_refs), so [`peak_rss_bytes`] then reports the peak of what follows.
/// Returns false where the kernel does not offer it.
pub fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// The process's peak resident set size in bytes (`VmHWM`), where the system reports it.
pub fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}
