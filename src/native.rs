//! Safe wrappers over csrc/shim.cpp: the libtorch entry points tch 0.24 lacks — fused
//! multi-tensor SGD, AdamW and lerp, gradient-norm clipping, autocast with an explicit reduced dtype, channels-last memory
//! order, the CUDA caching
//! allocator's statistics, and CUDA-graph capture/replay. Touches only the tensors it is given
//! and libtorch's thread-local autocast state; every libtorch exception becomes an `Error`.
use crate::{Error, Result};
use std::ffi::{c_char, c_int, c_void, CStr};
use tch::nn::VarStore;
use tch::{Device, Kind, Tensor};
use torch_sys::C_tensor;

extern "C" {
    fn samix_free_error(e: *mut c_char);
    fn samix_fused_sgd(
        params: *const *mut C_tensor,
        grads: *const *mut C_tensor,
        n: usize,
        buffers: *const *mut C_tensor,
        n_buffers: usize,
        weight_decay: f64,
        momentum: f64,
        lr: *mut C_tensor,
        nesterov: bool,
    ) -> *mut c_char;
    fn samix_fused_adamw(
        params: *const *mut C_tensor,
        grads: *const *mut C_tensor,
        exp_avgs: *const *mut C_tensor,
        exp_avg_sqs: *const *mut C_tensor,
        steps: *const *mut C_tensor,
        n: usize,
        lr: *mut C_tensor,
        beta1: f64,
        beta2: f64,
        weight_decay: f64,
        eps: f64,
    ) -> *mut c_char;
    fn samix_clip_grad_norm(
        grads: *const *mut C_tensor,
        n: usize,
        max_norm: f64,
        total: *mut *mut C_tensor,
    ) -> *mut c_char;
    fn samix_foreach_lerp(
        target: *const *mut C_tensor,
        other: *const *mut C_tensor,
        n: usize,
        weight: f64,
    ) -> *mut c_char;
    fn samix_autocast_enter(cuda: bool, dtype: c_int, cache: bool, saved: *mut AutocastState) -> *mut c_char;
    fn samix_autocast_exit(cuda: bool, saved: *const AutocastState) -> *mut c_char;
    fn samix_channels_last(t: *mut C_tensor, out: *mut *mut C_tensor) -> *mut c_char;
    fn samix_is_channels_last(t: *mut C_tensor, out: *mut bool) -> *mut c_char;
    fn samix_has_cuda_support() -> bool;
    fn samix_cuda_memory(
        device: c_int,
        peak_allocated: *mut i64,
        allocated: *mut i64,
        peak_reserved: *mut i64,
    ) -> *mut c_char;
    fn samix_cuda_reset_peak(device: c_int) -> *mut c_char;
    fn samix_graph_new(device: c_int, out: *mut *mut c_void) -> *mut c_char;
    fn samix_graph_stream(g: *mut c_void, enter: bool) -> *mut c_char;
    fn samix_graph_capture(g: *mut c_void, begin: bool) -> *mut c_char;
    fn samix_graph_replay(g: *mut c_void) -> *mut c_char;
    fn samix_graph_free(g: *mut c_void);
}

/// The autocast state an autocast region replaces (csrc/shim.cpp's `AutocastState`).
#[repr(C)]
#[derive(Default)]
struct AutocastState {
    enabled: bool,
    dtype: c_int,
    cache: bool,
}

/// Turns the shim's error convention (NULL or an owned message) into a `Result`.
pub(crate) fn check(what: &str, err: *mut c_char) -> Result<()> {
    if err.is_null() {
        return Ok(());
    }
    // SAFETY: a non-null return is a NUL-terminated string malloc'd by the shim, freed once here.
    let msg = unsafe { CStr::from_ptr(err) }.to_string_lossy().into_owned();
    unsafe { samix_free_error(err) };
    let first_line = msg.lines().next().unwrap_or("").to_string();
    Err(Error::Native(format!("{what}: {first_line}")))
}

fn handles(ts: &[&Tensor]) -> Vec<*mut C_tensor> {
    ts.iter().map(|t| t.as_ptr() as *mut C_tensor).collect()
}

/// `p ← p − lr·v` with `v ← m·v + g + wd·p` (Nesterov: step along `g + wd·p + m·v`) for every
/// triple, in torch's fused multi-tensor kernels; `lr` is a 0-dim float tensor on any device.
/// Buffers that start at zero reproduce torch.optim.SGD's first step (`v = g`); without
/// momentum, `buffers` is empty.
pub fn fused_sgd(
    params: &[&Tensor],
    grads: &[&Tensor],
    buffers: &[&Tensor],
    weight_decay: f64,
    momentum: f64,
    lr: &Tensor,
    nesterov: bool,
) -> Result<()> {
    let buffers_ok = if momentum == 0.0 { buffers.is_empty() } else { buffers.len() == params.len() };
    if params.len() != grads.len() || !buffers_ok {
        return Err(Error::Native(format!(
            "fused_sgd: {} parameters, {} gradients, {} buffers",
            params.len(),
            grads.len(),
            buffers.len()
        )));
    }
    if params.is_empty() {
        return Ok(());
    }
    let (p, g, b) = (handles(params), handles(grads), handles(buffers));
    // SAFETY: the handles are live tch tensors borrowed for the duration of the call.
    check("fused SGD", unsafe {
        samix_fused_sgd(
            p.as_ptr(),
            g.as_ptr(),
            p.len(),
            b.as_ptr(),
            b.len(),
            weight_decay,
            momentum,
            lr.as_ptr() as *mut C_tensor,
            nesterov,
        )
    })
}

/// AdamW's constants for one parameter group (torch.optim.AdamW's `betas`, `eps`, `weight_decay`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdamwHyper {
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
}

/// The state AdamW keeps per parameter: the moving averages of the gradient and of its square,
/// and the step counter (a 0-dim float tensor on the parameter's device).
pub struct AdamwState<'a> {
    pub exp_avgs: &'a [&'a Tensor],
    pub exp_avg_sqs: &'a [&'a Tensor],
    pub steps: &'a [&'a Tensor],
}

/// One torch.optim.AdamW(fused=True) update of every parameter: each step counter advances by
/// one, then `p ← p·(1 − lr·wd)`, the moments move by `β₁`/`β₂`, and `p` steps by the
/// bias-corrected `m̂ / (√v̂ + eps)` times `lr` (a 0-dim float tensor on any device).
pub fn fused_adamw(
    params: &[&Tensor],
    grads: &[&Tensor],
    state: &AdamwState,
    lr: &Tensor,
    h: AdamwHyper,
) -> Result<()> {
    let n = params.len();
    if [grads.len(), state.exp_avgs.len(), state.exp_avg_sqs.len(), state.steps.len()].iter().any(|&m| m != n) {
        return Err(Error::Native(format!("fused_adamw: {n} parameters, {} gradients, unequal state", grads.len())));
    }
    if n == 0 {
        return Ok(());
    }
    let (p, g) = (handles(params), handles(grads));
    let (m, v, t) = (handles(state.exp_avgs), handles(state.exp_avg_sqs), handles(state.steps));
    // SAFETY: as in `fused_sgd`.
    check("fused AdamW", unsafe {
        samix_fused_adamw(
            p.as_ptr(),
            g.as_ptr(),
            m.as_ptr(),
            v.as_ptr(),
            t.as_ptr(),
            n,
            lr.as_ptr() as *mut C_tensor,
            h.beta1,
            h.beta2,
            h.weight_decay,
            h.eps,
        )
    })
}

/// Scales `grads` in place so that their joint 2-norm is at most `max_norm`, exactly as
/// torch.nn.utils.clip_grad_norm_ does; returns the joint norm before clipping (a 0-dim tensor
/// on the gradients' device, read without a host sync only when the caller wants it).
pub fn clip_grad_norm(grads: &[&Tensor], max_norm: f64) -> Result<Option<Tensor>> {
    if grads.is_empty() {
        return Ok(None);
    }
    let g = handles(grads);
    let mut out: *mut C_tensor = std::ptr::null_mut();
    // SAFETY: as in `fused_sgd`; on success `out` is a new tensor handle owned by the result.
    check("gradient clipping", unsafe { samix_clip_grad_norm(g.as_ptr(), g.len(), max_norm, &mut out) })?;
    Ok(Some(unsafe { Tensor::from_ptr(out) }))
}

/// `target[i] ← target[i] + weight·(other[i] − target[i])` for all i, in multi-tensor kernels.
pub fn foreach_lerp(target: &[&Tensor], other: &[&Tensor], weight: f64) -> Result<()> {
    if target.len() != other.len() {
        return Err(Error::Native(format!("foreach_lerp: {} targets, {} sources", target.len(), other.len())));
    }
    if target.is_empty() {
        return Ok(());
    }
    let (t, o) = (handles(target), handles(other));
    // SAFETY: as in `fused_sgd`.
    check("foreach lerp", unsafe { samix_foreach_lerp(t.as_ptr(), o.as_ptr(), t.len(), weight) })
}

/// The floating-point format of the forward pass.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Precision {
    /// Everything in float32.
    #[default]
    F32,
    /// Autocast to bfloat16 (convolutions and matmuls; reductions and losses stay float32, as
    /// with torch.autocast). Parameters, gradients and optimiser state stay float32.
    Bf16,
}

impl Precision {
    pub fn name(self) -> &'static str {
        match self {
            Precision::F32 => "f32",
            Precision::Bf16 => "bf16",
        }
    }
}

impl std::str::FromStr for Precision {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "f32" | "fp32" | "float32" => Ok(Precision::F32),
            "bf16" | "bfloat16" => Ok(Precision::Bf16),
            other => Err(format!("unknown precision `{other}` (expected f32 or bf16)")),
        }
    }
}

/// The floating type reductions, attention and losses run in for tensors of kind `kind`: f64
/// stays f64 (a caller who runs a step in double precision, as the parity oracles do, gets it
/// throughout), every other floating type computes in f32 (bf16/f16 under autocast are upcast,
/// as torch.autocast does for these ops).
pub fn compute_kind(kind: Kind) -> Kind {
    if kind == Kind::Double {
        Kind::Double
    } else {
        Kind::Float
    }
}

/// Runs `f` with autocast set for `precision` on `device`'s type (nothing to do for F32).
/// `cache_casts` keeps the reduced-precision copies of weights for the region, as torch's
/// default does; CUDA-graph capture needs it off.
pub fn with_precision<T>(precision: Precision, device: Device, cache_casts: bool, f: impl FnOnce() -> T) -> Result<T> {
    if precision == Precision::F32 {
        return Ok(f());
    }
    let cuda = device.is_cuda();
    let mut saved = AutocastState::default();
    // SAFETY: `saved` is a live local of the shim's layout, handed back unchanged on exit.
    check("autocast", unsafe { samix_autocast_enter(cuda, 0, cache_casts, &mut saved) })?;
    let out = f();
    check("autocast", unsafe { samix_autocast_exit(cuda, &saved) })?;
    Ok(out)
}

/// `t` (4-D) in channels-last (NHWC) memory order: same shape and values, strides of an
/// `N×H×W×C` layout, which oneDNN and cuDNN convolutions run faster on.
pub fn to_channels_last(t: &Tensor) -> Result<Tensor> {
    let mut out = std::ptr::null_mut();
    // SAFETY: `t` is a live tensor; on success `out` is a fresh handle that Tensor owns.
    check("channels-last", unsafe { samix_channels_last(t.as_ptr() as *mut C_tensor, &mut out) })?;
    Ok(unsafe { Tensor::from_ptr(out) })
}

pub fn is_channels_last(t: &Tensor) -> Result<bool> {
    let mut out = false;
    // SAFETY: `t` is a live tensor, `out` a live local.
    check("channels-last", unsafe { samix_is_channels_last(t.as_ptr() as *mut C_tensor, &mut out) })?;
    Ok(out)
}

/// Re-lays every 4-D variable of `vs` (the convolution weights) in channels-last order, in place
/// (`set_data`, so optimisers and EMA pairs holding the variables see the change). Checkpoint
/// writers make tensors contiguous again, so files do not depend on the layout.
pub fn vars_to_channels_last(vs: &VarStore) -> Result<()> {
    for (_, mut v) in vs.variables() {
        if v.dim() == 4 {
            let relaid = to_channels_last(&v)?;
            tch::no_grad(|| v.set_data(&relaid));
        }
    }
    Ok(())
}

/// Whether this build can use CUDA graphs and read CUDA memory statistics.
pub fn has_cuda_support() -> bool {
    // SAFETY: reads a compile-time constant.
    unsafe { samix_has_cuda_support() }
}

/// Bytes the CUDA caching allocator holds in tensors on a device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CudaMemory {
    /// Most bytes held in tensors at once since the last `reset_cuda_peak`.
    pub peak_allocated: i64,
    pub allocated: i64,
    /// Most bytes the allocator reserved from the driver (what nvidia-smi would show, less the
    /// context).
    pub peak_reserved: i64,
}

pub fn cuda_memory(device: usize) -> Result<CudaMemory> {
    let (mut peak_allocated, mut allocated, mut peak_reserved) = (0, 0, 0);
    // SAFETY: the out-pointers are live locals.
    check("CUDA memory statistics", unsafe {
        samix_cuda_memory(device as c_int, &mut peak_allocated, &mut allocated, &mut peak_reserved)
    })?;
    Ok(CudaMemory { peak_allocated, allocated, peak_reserved })
}

pub fn reset_cuda_peak(device: usize) -> Result<()> {
    // SAFETY: plain integer argument.
    check("CUDA memory statistics", unsafe { samix_cuda_reset_peak(device as c_int) })
}

/// One captured CUDA graph of a piece of work (a whole training step), replayed with one launch.
///
/// Capture records kernels and the addresses they read and write: the work must take its
/// inputs from tensors that stay put (copy each new batch into them), keep every shape fixed,
/// draw its randomness on the device (torch's generator is graph-safe), and never wait on the
/// host. Warm-up runs on the graph's side stream first so lazily created workspaces and cuDNN's
/// algorithm search happen outside the capture.
pub struct CudaGraph {
    raw: *mut c_void,
}

impl CudaGraph {
    /// Warms `work` up `warmup` times on a side stream of CUDA device `device`, then captures
    /// one call of it. The first error of `work` or of the capture is returned.
    pub fn capture(device: Device, warmup: usize, mut work: impl FnMut() -> Result<()>) -> Result<CudaGraph> {
        let Device::Cuda(index) = device else {
            return Err(Error::Native(format!("CUDA graphs need a CUDA device, not {device:?}")));
        };
        let mut raw = std::ptr::null_mut();
        // SAFETY: `raw` receives a pointer owned by the returned CudaGraph (freed in Drop).
        check("CUDA graph", unsafe { samix_graph_new(index as c_int, &mut raw) })?;
        let graph = CudaGraph { raw };
        check("CUDA graph side stream", unsafe { samix_graph_stream(graph.raw, true) })?;
        let captured = (|| {
            for _ in 0..warmup {
                work()?;
            }
            check("CUDA graph capture", unsafe { samix_graph_capture(graph.raw, true) })?;
            let result = work();
            // End the capture even when the work failed, so the stream leaves capture mode.
            let ended = check("CUDA graph capture", unsafe { samix_graph_capture(graph.raw, false) });
            result.and(ended)
        })();
        let left = check("CUDA graph side stream", unsafe { samix_graph_stream(graph.raw, false) });
        captured.and(left)?;
        Ok(graph)
    }

    /// Launches the captured work once on the current stream.
    pub fn replay(&self) -> Result<()> {
        // SAFETY: `raw` is a live graph owned by self.
        check("CUDA graph replay", unsafe { samix_graph_replay(self.raw) })
    }
}

impl Drop for CudaGraph {
    fn drop(&mut self) {
        // SAFETY: created by samix_graph_new, freed exactly once.
        unsafe { samix_graph_free(self.raw) }
    }
}
