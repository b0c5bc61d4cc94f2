//! Data-parallel training across processes on PyTorch's c10d engine (csrc/dist.cpp): where a
//! launcher (torchrun, or SLURM's srun) says this process stands ([`Launch`]), the Gloo process
//! group it joins ([`ProcessGroup`]), and the collectives a training step needs — gradients
//! averaged in buckets, variables broadcast from rank 0, a few host scalars reduced. Every
//! collective waits at most the group's timeout, so a dead peer ends the others with an error
//! instead of a hang. Touches only the tensors it is given.
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::ffi::{c_char, c_int, c_void, CString};
use std::ptr::NonNull;
use std::time::Duration;
use tch::{Device, Kind, Tensor};
use torch_sys::C_tensor;

extern "C" {
    fn samix_pg_new(
        host: *const c_char,
        port: u16,
        rank: c_int,
        world: c_int,
        host_store: bool,
        prefix: *const c_char,
        timeout_ms: i64,
        out: *mut *mut c_void,
    ) -> *mut c_char;
    fn samix_pg_free(g: *mut c_void);
    fn samix_pg_allreduce(g: *mut c_void, ts: *const *mut C_tensor, n: usize, op: c_int) -> *mut c_char;
    fn samix_pg_broadcast(g: *mut c_void, ts: *const *mut C_tensor, n: usize, root: c_int) -> *mut c_char;
    fn samix_pg_allgather(g: *mut c_void, input: *mut C_tensor, out: *mut C_tensor) -> *mut c_char;
    fn samix_pg_barrier(g: *mut c_void) -> *mut c_char;
}

/// The `[dist]` table of a run: how data-parallel processes talk (only read when a launcher
/// starts several; neither key changes what is trained, so a resume may change them).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DistConfig {
    /// Gradients are averaged in buckets of at most this many MiB (PyTorch DDP's default, 25).
    pub bucket_mb: f64,
    /// The longest any collective (the rendezvous included) may wait for the other processes.
    pub timeout_s: f64,
}

impl Default for DistConfig {
    fn default() -> Self {
        DistConfig { bucket_mb: 25.0, timeout_s: 300.0 }
    }
}

impl DistConfig {
    pub fn check(&self) -> Result<()> {
        if !(self.bucket_mb.is_finite() && self.bucket_mb > 0.0) {
            return Err(Error::config("dist.bucket_mb", "must be a positive number of MiB"));
        }
        if self.bucket_mb > (crate::limits::MAX_TENSOR_BYTES >> 20) as f64 {
            return Err(Error::config("dist.bucket_mb", "is above samix's limit of 32768 MiB for one tensor"));
        }
        if !(self.timeout_s.is_finite() && self.timeout_s >= 1.0 && self.timeout_s <= 86_400.0) {
            return Err(Error::config("dist.timeout_s", "must be between 1 and 86400 seconds"));
        }
        Ok(())
    }
    pub fn timeout(&self) -> Duration {
        Duration::from_secs_f64(self.timeout_s)
    }
    pub fn bucket_bytes(&self) -> usize {
        (self.bucket_mb * 1024.0 * 1024.0) as usize
    }
}

/// Which launcher's variables described the process.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Launcher {
    /// torchrun (or anything setting `RANK`, `WORLD_SIZE`, `LOCAL_RANK`, `MASTER_ADDR`, `MASTER_PORT`).
    Torchrun,
    /// A task of an srun job step: `SLURM_PROCID`, `SLURM_STEP_NUM_TASKS`, `SLURM_LOCALID`, with
    /// `MASTER_ADDR` and `MASTER_PORT`.
    Slurm,
}

/// Where this process stands in a multi-process launch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Launch {
    pub launcher: Launcher,
    pub rank: usize,
    pub world_size: usize,
    /// The process's index on its node (picks its GPU).
    pub local_rank: usize,
    pub master_addr: String,
    pub master_port: u16,
    /// torchrun's agent already serves the TCPStore at the master address: every rank connects
    /// to it (none hosts one).
    pub agent_store: bool,
    /// torchrun's restart count (keys of an earlier attempt in the agent's store are not reused).
    pub restart: u32,
}

impl Launch {
    /// The device this rank trains on, given the one asked for: one GPU per process, the
    /// launcher's local rank picking it among the GPUs this process sees (one, when the launcher
    /// gives each task its own), unless `device` names an index itself (`explicit_index`).
    pub fn rank_device(&self, device: tch::Device, explicit_index: bool) -> tch::Device {
        match device {
            tch::Device::Cuda(_) if !explicit_index => {
                let visible = tch::Cuda::device_count().max(1) as usize;
                tch::Device::Cuda(self.local_rank % visible)
            }
            other => other,
        }
    }

    /// The launch described by this process's environment: `None` for a plain process (or a
    /// launch of one), an error naming the variable when the description is incomplete.
    pub fn from_env() -> Result<Option<Launch>> {
        Self::from_vars(|k| std::env::var(k).ok())
    }

    /// As [`Launch::from_env`], reading variables through `var`.
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<Option<Launch>> {
        let (launcher, rank_var, world_var, local_var) = if var("RANK").is_some() || var("WORLD_SIZE").is_some() {
            (Launcher::Torchrun, "RANK", "WORLD_SIZE", "LOCAL_RANK")
        } else if var("SLURM_PROCID").is_some() && var("SLURM_STEP_NUM_TASKS").is_some() {
            // A task of a job step (srun). The job's own variables (SLURM_NTASKS) are also set
            // in a batch script, where samix runs as one plain process.
            (Launcher::Slurm, "SLURM_PROCID", "SLURM_STEP_NUM_TASKS", "SLURM_LOCALID")
        } else {
            return Ok(None);
        };
        let number = |name: &str| -> Result<usize> {
            let v = var(name).ok_or_else(|| launch_error(name, "is not set".into()))?;
            v.trim().parse::<usize>().map_err(|_| launch_error(name, format!("is `{v}`, not a whole number")))
        };
        let world_size = number(world_var)?;
        if world_size == 0 {
            return Err(launch_error(world_var, "is 0".into()));
        }
        if world_size == 1 {
            return Ok(None);
        }
        let rank = number(rank_var)?;
        if rank >= world_size {
            return Err(launch_error(rank_var, format!("is {rank}, not below {world_var} = {world_size}")));
        }
        let local_rank = number(local_var)?;
        let master_addr = var("MASTER_ADDR")
            .filter(|a| !a.trim().is_empty())
            .ok_or_else(|| launch_error("MASTER_ADDR", "is not set (the host of rank 0)".into()))?;
        let port = var("MASTER_PORT").ok_or_else(|| launch_error("MASTER_PORT", "is not set".into()))?;
        let master_port = match port.trim().parse::<u16>() {
            Ok(p) if p > 0 => p,
            _ => return Err(launch_error("MASTER_PORT", format!("is `{port}`, not a port number"))),
        };
        let agent_store =
            launcher == Launcher::Torchrun && var("TORCHELASTIC_USE_AGENT_STORE").is_some_and(|v| v == "True");
        let restart = var("TORCHELASTIC_RESTART_COUNT").and_then(|v| v.trim().parse().ok()).unwrap_or(0);
        Ok(Some(Launch {
            launcher,
            rank,
            world_size,
            local_rank,
            master_addr: master_addr.trim().to_string(),
            master_port,
            agent_store,
            restart,
        }))
    }
}

fn launch_error(var: &str, msg: String) -> Error {
    Error::Argument(format!("multi-process launch: environment variable {var} {msg}"))
}

/// A Gloo process group: this process's rank among `world_size`, and the collectives between
/// them. Gloo serves CPU tensors (and CUDA ones through host copies).
pub struct ProcessGroup {
    raw: NonNull<c_void>,
    rank: usize,
    world_size: usize,
    local_rank: usize,
    timeout: Duration,
}

// SAFETY: c10d's process groups may be driven from any thread (their work queue is locked).
// Collectives must still be issued in the same order on every rank, which samix does by issuing
// them from one thread (the training loop's).
unsafe impl Send for ProcessGroup {}
unsafe impl Sync for ProcessGroup {}

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        // SAFETY: `raw` came from samix_pg_new and is freed exactly once.
        unsafe { samix_pg_free(self.raw.as_ptr()) }
    }
}

impl std::fmt::Debug for ProcessGroup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ProcessGroup(rank {} of {})", self.rank, self.world_size)
    }
}

const OP_SUM: c_int = 0;
const OP_MAX: c_int = 1;

impl ProcessGroup {
    /// Joins the group `launch` describes: rendezvous through the TCPStore at the master
    /// address (rank 0 hosts it unless torchrun's agent does), waiting at most `timeout` for
    /// the others, which is also the bound of every later collective.
    pub fn connect(launch: &Launch, timeout: Duration) -> Result<ProcessGroup> {
        let host = CString::new(launch.master_addr.as_str())
            .map_err(|_| launch_error("MASTER_ADDR", "contains a NUL byte".into()))?;
        let prefix = CString::new(format!("samix/attempt_{}/", launch.restart)).unwrap_or_default();
        let host_store = launch.rank == 0 && !launch.agent_store;
        let mut raw: *mut c_void = std::ptr::null_mut();
        // SAFETY: the strings outlive the call; `raw` is written only on success.
        let err = unsafe {
            samix_pg_new(
                host.as_ptr(),
                launch.master_port,
                launch.rank as c_int,
                launch.world_size as c_int,
                host_store,
                prefix.as_ptr(),
                timeout.as_millis().min(i64::MAX as u128) as i64,
                &mut raw,
            )
        };
        crate::native::check(
            &format!(
                "joining the process group as rank {} of {} at {}:{}",
                launch.rank, launch.world_size, launch.master_addr, launch.master_port
            ),
            err,
        )?;
        let raw = NonNull::new(raw).ok_or_else(|| Error::Native("process group: no handle returned".into()))?;
        Ok(ProcessGroup {
            raw,
            rank: launch.rank,
            world_size: launch.world_size,
            local_rank: launch.local_rank,
            timeout,
        })
    }

    pub fn rank(&self) -> usize {
        self.rank
    }
    pub fn world_size(&self) -> usize {
        self.world_size
    }
    pub fn local_rank(&self) -> usize {
        self.local_rank
    }
    /// Rank 0: the process that writes the run directory and speaks for the run.
    pub fn is_main(&self) -> bool {
        self.rank == 0
    }
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    fn check(&self, what: &str, err: *mut c_char) -> Result<()> {
        crate::native::check(&format!("{what} (rank {} of {})", self.rank, self.world_size), err).map_err(|e| {
            match e {
                Error::Native(msg) => Error::Native(format!(
                    "{msg} (when another process of the run has stopped, its output says why; a collective waits at most dist.timeout_s = {:.0}s)",
                    self.timeout.as_secs_f64()
                )),
                other => other,
            }
        })
    }

    fn all_reduce(&self, tensors: &[&Tensor], op: c_int) -> Result<()> {
        let handles: Vec<*mut C_tensor> = tensors.iter().map(|t| t.as_ptr() as *mut C_tensor).collect();
        // SAFETY: live tch tensors borrowed for the call.
        let err = unsafe { samix_pg_allreduce(self.raw.as_ptr(), handles.as_ptr(), handles.len(), op) };
        self.check("all-reduce", err)
    }

    /// Sums every tensor over the ranks, in place (each tensor one collective; contiguous).
    pub fn all_reduce_sum(&self, tensors: &[&Tensor]) -> Result<()> {
        self.all_reduce(tensors, OP_SUM)
    }

    /// Element-wise maximum over the ranks, in place.
    pub fn all_reduce_max(&self, tensors: &[&Tensor]) -> Result<()> {
        self.all_reduce(tensors, OP_MAX)
    }

    /// Every tensor takes rank `root`'s values, in place (contiguous tensors).
    pub fn broadcast(&self, tensors: &[&Tensor], root: usize) -> Result<()> {
        let handles: Vec<*mut C_tensor> = tensors.iter().map(|t| t.as_ptr() as *mut C_tensor).collect();
        // SAFETY: live tch tensors borrowed for the call.
        let err = unsafe { samix_pg_broadcast(self.raw.as_ptr(), handles.as_ptr(), handles.len(), root as c_int) };
        self.check("broadcast", err)
    }

    /// Every rank's `input`, stacked in rank order (`world_size × input's shape`).
    pub fn all_gather(&self, input: &Tensor) -> Result<Tensor> {
        let original_shape = input.size();
        // c10d's flat all-gather concatenates along the first dimension of a flat input.
        let input = input.contiguous().reshape([-1]);
        let out = Tensor::empty([self.world_size as i64 * input.numel() as i64], (input.kind(), input.device()));
        // SAFETY: live tch tensors borrowed for the call.
        let err = unsafe {
            samix_pg_allgather(self.raw.as_ptr(), input.as_ptr() as *mut C_tensor, out.as_ptr() as *mut C_tensor)
        };
        self.check("all-gather", err)?;
        let mut shape = vec![self.world_size as i64];
        shape.extend(original_shape);
        Ok(out.view(shape.as_slice()))
    }

    /// Returns once every rank has reached it (or fails after the timeout).
    pub fn barrier(&self) -> Result<()> {
        // SAFETY: plain call on the live group.
        let err = unsafe { samix_pg_barrier(self.raw.as_ptr()) };
        self.check("barrier", err)
    }

    /// Replaces every tensor (gradients) by its mean over the ranks: tensors are packed into
    /// flat buckets of at most `bucket_bytes` (one dtype and device each, in the given order),
    /// each bucket is one all-reduce, and the buckets run concurrently on Gloo's threads.
    pub fn average(&self, tensors: &[Tensor], bucket_bytes: usize) -> Result<()> {
        let scale = 1.0 / self.world_size as f64;
        self.bucketed(tensors, bucket_bytes, |flat| {
            self.all_reduce_sum(flat)?;
            for f in flat {
                let _ = f.shallow_clone().g_mul_scalar_(scale);
            }
            Ok(())
        })
    }

    /// Every tensor takes rank 0's values (weights, statistics, optimiser state), in buckets.
    pub fn broadcast_from_main(&self, tensors: &[Tensor], bucket_bytes: usize) -> Result<()> {
        self.bucketed(tensors, bucket_bytes, |flat| self.broadcast(flat, 0))
    }

    /// Packs `tensors` into flat buckets, runs `collective` on them, and copies the results back.
    fn bucketed(
        &self,
        tensors: &[Tensor],
        bucket_bytes: usize,
        collective: impl FnOnce(&[&Tensor]) -> Result<()>,
    ) -> Result<()> {
        let _guard = tch::no_grad_guard();
        let buckets = plan_buckets(tensors, bucket_bytes);
        let flats: Vec<Tensor> = buckets
            .iter()
            .map(|b| {
                let parts: Vec<Tensor> = b.iter().map(|&i| tensors[i].reshape([-1])).collect();
                Tensor::cat(&parts, 0)
            })
            .collect();
        collective(&flats.iter().collect::<Vec<_>>())?;
        for (bucket, flat) in buckets.iter().zip(&flats) {
            let mut offset = 0;
            for &i in bucket {
                let n = tensors[i].numel() as i64;
                let mut t = tensors[i].shallow_clone();
                t.copy_(&flat.narrow(0, offset, n).view_as(&t));
                offset += n;
            }
        }
        Ok(())
    }

    /// Rank 0's `bytes` on every rank (two collectives: the length, then the bytes).
    pub fn broadcast_bytes(&self, bytes: Vec<u8>) -> Result<Vec<u8>> {
        let len = Tensor::from_slice(&[bytes.len() as i64]);
        self.broadcast(&[&len], 0)?;
        let len = len.int64_value(&[0]).max(0) as usize;
        let mut bytes = bytes;
        bytes.resize(len, 0);
        let t = Tensor::from_slice(&bytes);
        self.broadcast(&[&t], 0)?;
        Ok(Vec::<u8>::try_from(&t)?)
    }

    /// The sums over the ranks of some host numbers (one small collective).
    pub fn sum_f64(&self, values: &[f64]) -> Result<Vec<f64>> {
        let t = Tensor::from_slice(values).to_kind(Kind::Double);
        self.all_reduce_sum(&[&t])?;
        Ok(Vec::<f64>::try_from(&t)?)
    }

    /// Whether `flag` holds on any rank (one small collective).
    pub fn any(&self, flag: bool) -> Result<bool> {
        let t = Tensor::from_slice(&[i32::from(flag)]);
        self.all_reduce_max(&[&t])?;
        Ok(t.int64_value(&[0]) != 0)
    }
}

/// Groups tensor indices into buckets: consecutive tensors of one kind and device, at most
/// `bucket_bytes` each (a larger tensor is a bucket of its own). Undefined tensors are skipped.
pub fn plan_buckets(tensors: &[Tensor], bucket_bytes: usize) -> Vec<Vec<usize>> {
    let mut buckets: Vec<Vec<usize>> = Vec::new();
    let mut current: Option<(Kind, Device, usize)> = None;
    for (i, t) in tensors.iter().enumerate() {
        if !t.defined() {
            continue;
        }
        let bytes = t.numel() * t.kind().elt_size_in_bytes();
        let key = (t.kind(), t.device());
        match (&mut current, buckets.last_mut()) {
            (Some((k, d, used)), Some(last)) if (*k, *d) == key && *used + bytes <= bucket_bytes => {
                last.push(i);
                *used += bytes;
            }
            _ => {
                buckets.push(vec![i]);
                current = Some((key.0, key.1, bytes));
            }
        }
    }
    buckets
}
