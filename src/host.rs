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

/// Whether this CPU computes bf16 in hardware (AVX-512 BF16 or AMX-BF16). Without either,
/// libtorch emulates bf16 on the CPU and a bf16 step runs many times slower than an f32 one
/// (16× for a ResNet-18 step on a 2-core AMD EPYC without AVX-512). `None` where it cannot tell.
pub fn cpu_has_bf16() -> Option<bool> {
    if cfg!(not(target_arch = "x86_64")) {
        return None;
    }
    std::fs::read_to_string("/proc/cpuinfo").ok().map(|info| cpuinfo_has_bf16(&info))
}

/// Whether a `/proc/cpuinfo` text lists a bf16 instruction set among its flags.
pub fn cpuinfo_has_bf16(cpuinfo: &str) -> bool {
    cpuinfo
        .lines()
        .filter(|l| l.starts_with("flags"))
        .any(|l| l.split_whitespace().any(|f| f == "avx512_bf16" || f == "amx_bf16"))
}

/// The one-line warning for bf16 on a CPU without bf16 instructions (`None`: nothing to say).
pub fn bf16_cpu_warning(has_bf16: Option<bool>) -> Option<String> {
    (has_bf16 == Some(false)).then(|| {
        "bf16 on this CPU is emulated (no AVX-512 BF16 or AMX-BF16 among its flags): a step runs many \
         times slower than in f32 (16x for ResNet-18 on a 2-core AMD EPYC); use f32 here — bf16 pays \
         off on GPUs and on CPUs with those instructions"
            .to_string()
    })
}

/// Warns (one line) when a run or the bench asks for bf16 on a CPU that only emulates it.
pub fn warn_if_bf16_emulated(precision: crate::native::Precision, device: tch::Device) {
    if precision == crate::native::Precision::Bf16 && device == tch::Device::Cpu {
        if let Some(w) = bf16_cpu_warning(cpu_has_bf16()) {
            tracing::warn!("{w}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bf16_is_read_from_the_cpu_flags() {
        let without = "processor\t: 0\nflags\t\t: fpu sse2 avx2 fma\n";
        let with = "processor\t: 0\nflags\t\t: fpu avx2 avx512f avx512_bf16\n";
        let amx = "flags\t\t: fpu amx_tile amx_bf16\n";
        assert!(!cpuinfo_has_bf16(without));
        assert!(cpuinfo_has_bf16(with) && cpuinfo_has_bf16(amx));
        assert!(!cpuinfo_has_bf16("flags\t\t: avx512_bf16x\nbugs\t: avx512_bf16\n"));
        assert!(bf16_cpu_warning(Some(false)).is_some_and(|w| w.contains("emulated")));
        assert!(bf16_cpu_warning(Some(true)).is_none() && bf16_cpu_warning(None).is_none());
    }
}
