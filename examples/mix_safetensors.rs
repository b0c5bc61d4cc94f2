//! Any input policy applied from plain Rust to a batch stored in a safetensors file: reads
//! `images` (N×C×H×W float) and `labels` (N int64), mixes them with the `[mix]` table given as
//! JSON (the keys of a config file) and a seed, and writes the mixed images, `y_a`, `y_b`, `lam`
//! and, for mask policies, `first_weight` and `pairing`. The Python package's tests compare its
//! output with `samix.<Policy>(...)` on the same batch and seed (tests/python/test_policies.py).
//!
//!     cargo run --example mix_safetensors -- IN.safetensors OUT.safetensors SEED '{"policy": "cutmix", "alpha": 1.0}'
use anyhow::{bail, Context, Result};
use samix::{MixConfig, MixPolicy, Stream};
use tch::{Device, Tensor};

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [input, output, seed, table] = args.as_slice() else {
        bail!("usage: mix_safetensors IN.safetensors OUT.safetensors SEED MIX_TABLE_JSON");
    };
    let seed: u64 = seed.parse().context("SEED must be a whole number")?;
    let config: MixConfig = serde_json::from_str(table).context("MIX_TABLE_JSON")?;
    config.check(0)?;
    let policy = samix::train::input_policy(&config, Device::Cpu)?;

    let named = samix::read_safetensors(std::path::Path::new(input), "batch")?;
    let find = |name: &str| named.iter().find(|(n, _)| n == name).map(|(_, t)| t.shallow_clone());
    let (Some(images), Some(labels)) = (find("images"), find("labels")) else {
        bail!("{input}: needs tensors `images` and `labels`");
    };
    // The stream a Python policy object seeded with `seed` draws from.
    let mut rng = samix::stream(seed, Stream::Mix, 0, 0);
    let mixed = policy.mix(&images, &labels, &mut rng);

    let mut out: Vec<(String, Tensor)> = vec![
        ("images".into(), mixed.images),
        ("y_a".into(), mixed.targets.y_a),
        ("y_b".into(), mixed.targets.y_b),
        ("lam".into(), mixed.targets.lam),
    ];
    out.extend(mixed.first_weight.map(|w| ("first_weight".to_string(), w)));
    out.extend(mixed.pairing.map(|p| ("pairing".to_string(), p)));
    let out: Vec<(String, Tensor)> = out.into_iter().map(|(n, t)| (n, t.contiguous())).collect();
    Tensor::write_safetensors(&out, output).with_context(|| format!("{output}: cannot write"))?;
    Ok(())
}
