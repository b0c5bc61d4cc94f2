//! The size policy: every quantity a user sizes (a config key or a command-line flag) has an upper
//! limit here, checked where the config is read or the flag parsed, so an absurd value gives one
//! error naming the key and the limit instead of an allocation abort, a panic inside libtorch or
//! a loop that never ends (issue 24, R3). Beside the limits on single values, two estimates are
//! bounded: a network's parameter count and the bytes of its largest activation, which catch
//! combinations of values that are each within their limits.
//!
//! Each limit is generous for real use: several times the largest value a published recipe of
//! this field uses (stated beside each), and small enough that the quantity it sizes can still be
//! allocated, or the loop it bounds end, on a large machine.
use crate::{Error, Result};
use std::fmt::Display;

/// Side of an image in pixels (`data.augment.image_size`, `test_resize`, `mix.upsample_to`,
/// `samix mix --image-size`, PuzzleMix's block grids). ImageNet recipes train at 224–600 and
/// test at up to 1024; one 4096² RGB image is 192 MiB in f32.
pub const MAX_IMAGE_SIDE: u64 = 4096;

/// Channels of a network's first stage (`model.base_width`). ResNets use 64, wide ResNets 128
/// (their last stage then has 8 × that); the parameter estimate below is what refuses a wide
/// network that is also deep.
pub const MAX_WIDTH: u64 = 65_536;

/// Residual blocks of one stage (`model.blocks`). The deepest ResNets published (ResNet-1202 on
/// CIFAR) have 200 blocks per stage; each block is built at start-up, so 10⁵ of them made the run
/// appear to hang.
pub const MAX_BLOCKS_PER_STAGE: u64 = 1000;

/// Images in one batch (`train.batch_size`, `train.eval_batch_size`, `samix bench --batch`). The
/// largest published batches (LARS/LAMB) are 64 K images; this is 16 times that.
pub const MAX_BATCH: u64 = 1 << 20;

/// Width of the self-supervised neck (`ssl.hidden_dim`, `ssl.feature_dim`): MoCo v2 uses 2048 and
/// 128, the widest SSL projectors 8192–65536.
pub const MAX_FEATURE_DIM: u64 = 1 << 20;

/// Keys in the MoCo queue (`ssl.queue_size`): MoCo uses 65,536; a queue is also bounded by
/// [`MAX_TENSOR_BYTES`] with its feature dimension.
pub const MAX_QUEUE: u64 = 1 << 24;

/// Iterations of an inner loop a key sets (`mix.sinkhorn_iterations`; the reference: 100).
pub const MAX_ITERATIONS: u64 = 100_000;

/// Loader threads (`data.workers`) and batches prefetched (`data.prefetch`): every worker is a
/// thread and every prefetched batch is held in memory; real machines have at most a few hundred
/// cores.
pub const MAX_WORKERS: u64 = 1024;

/// Epochs of a run (`train.epochs`): step counters are epochs × steps per epoch in 64 bits; the
/// longest recipes run 1000–5000 epochs.
pub const MAX_EPOCHS: u64 = 1_000_000;

/// Seconds a key sets (`log.progress_every_s`): 10⁸ s is three years; larger values overflowed
/// the conversion to a duration (a panic).
pub const MAX_SECONDS: f64 = 1e8;

/// Classes of a classifier and channels of its input, as a weights file states them (`fc.weight`,
/// `conv1.weight`; ImageNet-21k has 21,841 classes): a larger classifier is refused before it is
/// built.
pub const MAX_CLASSES: u64 = 1 << 20;

/// Images in a `samix mix` grid (`--n`): the grid is one PNG with a column per image.
pub const MAX_GRID_IMAGES: u64 = 1024;

/// Estimated parameters of the network a config builds (with its SSL neck): 2³⁰ f32 values are
/// 4 GiB, and training holds four copies (weights, gradients, momentum, EMA). The largest network
/// a recipe here names, WRN-28-8 with 24 M (ResNet-101: 45 M), is 40 times below.
pub const MAX_PARAMETERS: u64 = 1 << 30;

/// Estimated bytes of one activation or buffer a config sizes (one batch of the first stage's
/// feature map; the SSL queue). A training step keeps several such tensors per block for the
/// backward pass, so one of 32 GiB does not train on any single device of today (the largest has
/// 141 GiB); a ResNet-50 at 224 px and batch 1024 needs 3.3 GiB.
pub const MAX_TENSOR_BYTES: u64 = 32 << 30;

/// The error for `key` (a config key, or a flag when it starts with `--`).
pub fn size_error(key: &str, msg: impl Into<String>) -> Error {
    if key.starts_with("--") {
        Error::Argument(format!("{key}: {}", msg.into()))
    } else {
        Error::config(key, msg)
    }
}

/// Refuses `value` of `key` above `limit`, naming both (`value`'s lower bound is checked where
/// the key is: most must be at least 1).
pub fn check_size<T>(key: &str, value: T, limit: u64) -> Result<()>
where
    T: Copy + Display + TryInto<u64>,
{
    match value.try_into() {
        Ok(v) if v <= limit => Ok(()),
        Ok(_) => Err(size_error(key, format!("{value} is above samix's limit of {limit}"))),
        Err(_) => Err(size_error(key, format!("{value} is not a size (negative)"))),
    }
}

/// [`check_size`] of every value of a list key (`model.blocks`).
pub fn check_sizes<T>(key: &str, values: &[T], limit: u64) -> Result<()>
where
    T: Copy + Display + TryInto<u64>,
{
    values.iter().try_for_each(|&v| check_size(key, v, limit))
}

/// Refuses an estimated parameter count above [`MAX_PARAMETERS`]; `keys` names what sized it.
pub fn check_parameters(keys: &str, estimate: u64) -> Result<()> {
    if estimate > MAX_PARAMETERS {
        let msg = format!(
            "these make a network of about {:.3e} parameters, above samix's limit of {MAX_PARAMETERS} (2^30, 4 GiB of f32)",
            estimate as f64
        );
        return Err(size_error(keys, msg));
    }
    Ok(())
}

/// Refuses an estimated tensor of `bytes` above [`MAX_TENSOR_BYTES`]; `keys` names what sized
/// it and `what` says which tensor it is.
pub fn check_tensor_bytes(keys: &str, what: &str, bytes: u64) -> Result<()> {
    if bytes > MAX_TENSOR_BYTES {
        let gib = bytes as f64 / (1u64 << 30) as f64;
        let msg = format!("{what} would take about {gib:.1} GiB, above samix's limit of 32 GiB for one tensor");
        return Err(size_error(keys, msg));
    }
    Ok(())
}

/// Refuses a number of seconds above [`MAX_SECONDS`] (NaN and negative values are the key's
/// own check).
pub fn check_seconds(key: &str, value: f64) -> Result<()> {
    if value > MAX_SECONDS {
        return Err(size_error(key, format!("{value} is above samix's limit of {MAX_SECONDS} seconds")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_name_the_key_and_the_limit() {
        assert!(check_size("model.base_width", 65_536i64, MAX_WIDTH).is_ok());
        let e = check_size("model.base_width", 100_000_000i64, MAX_WIDTH).unwrap_err().to_string();
        assert_eq!(e, "config key `model.base_width`: 100000000 is above samix's limit of 65536");
        let e = check_size("--batch", 100_000_000i64, MAX_BATCH).unwrap_err().to_string();
        assert_eq!(e, "invalid argument: --batch: 100000000 is above samix's limit of 1048576");
        assert!(check_size("x", -1i64, 10).unwrap_err().to_string().contains("negative"));
        assert!(check_tensor_bytes("k", "t", MAX_TENSOR_BYTES).is_ok());
        assert!(check_parameters("k", MAX_PARAMETERS + 1).is_err());
    }
}
