//! Parsing of `--device cpu|cuda|cuda:N` into a tch device, with the default "cuda if available";
//! per-device preparation and sync-free uploads of small host tensors.
use crate::{Error, Result};
use tch::Device;

/// Lets cuDNN pick the fastest convolution algorithms for the (fixed) shapes of a run, as the
/// PyTorch reference does (`torch.backends.cudnn.benchmark = True`); nothing happens on the CPU.
pub fn prepare(device: Device) {
    if device.is_cuda() {
        tch::Cuda::cudnn_set_benchmark(true);
    }
}

/// A host tensor on `device` without making the host wait: on CUDA the data goes through pinned
/// memory with a non-blocking copy (a pageable copy would synchronise the stream, stalling the
/// launch queue of a launch-bound step); libtorch's pinned allocator keeps the staging buffer
/// alive until the copy has run. On the CPU the tensor is returned as it is.
pub fn upload(host: &tch::Tensor, device: Device) -> tch::Tensor {
    if device.is_cuda() {
        host.pin_memory(device).to_device_(device, host.kind(), true, false)
    } else {
        host.to_device(device)
    }
}

/// `None` or "auto" picks the first GPU when one is usable, else the CPU.
pub fn parse_device(spec: Option<&str>) -> Result<Device> {
    let spec = spec.unwrap_or("auto").trim();
    let cuda_count = || tch::Cuda::device_count() as usize;
    match spec {
        "auto" => Ok(Device::cuda_if_available()),
        "cpu" => Ok(Device::Cpu),
        "cuda" => cuda_device(0, cuda_count()),
        other => match other.strip_prefix("cuda:").map(str::parse::<usize>) {
            Some(Ok(n)) => cuda_device(n, cuda_count()),
            _ => Err(Error::Argument(format!("device `{other}`: expected `cpu`, `cuda`, `cuda:N` or `auto`"))),
        },
    }
}

fn cuda_device(index: usize, available: usize) -> Result<Device> {
    if index >= available {
        return Err(Error::Argument(format!("device `cuda:{index}`: {available} CUDA device(s) visible to libtorch")));
    }
    Ok(Device::Cuda(index))
}
