//! What averaging ResNet-18's gradients over data-parallel processes costs on c10d's Gloo
//! backend, per bucket size: the gradient step samix takes between the backward pass and the
//! update (`ProcessGroup::average`: pack into flat buckets, one all-reduce per bucket, unpack).
//! Rank 0 prints a table (milliseconds per step, median of REPS).
//!
//!     cargo build --release --example dist_allreduce
//!     torchrun --no-python --nproc-per-node 2 target/release/examples/dist_allreduce [REPS] [CLASSES]
use anyhow::{Context, Result};
use samix::dist::{plan_buckets, Launch, ProcessGroup};
use samix::model::{Arch, ModelConfig, Network};
use std::time::{Duration, Instant};
use tch::nn::VarStore;
use tch::{Device, Tensor};

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let reps: usize = args.get(1).map_or(Ok(30), |s| s.parse()).context("REPS must be a whole number")?;
    let classes: i64 = args.get(2).map_or(Ok(100), |s| s.parse()).context("CLASSES must be a whole number")?;
    let launch = Launch::from_env()?.context("start it under torchrun (RANK and WORLD_SIZE are not set)")?;
    tch::set_num_threads(1);
    let group = ProcessGroup::connect(&launch, Duration::from_secs(120))?;

    // ResNet-18 (CIFAR stem) gradients: random values of the parameters' shapes, in the
    // optimiser's order (sorted names).
    tch::manual_seed(launch.rank as i64);
    let vs = VarStore::new(Device::Cpu);
    let _net = Network::new(&vs.root(), &ModelConfig::new(Arch::Resnet18), 3, classes)?;
    let mut params: Vec<(String, Tensor)> = vs.variables().into_iter().filter(|(_, t)| t.requires_grad()).collect();
    params.sort_by(|a, b| a.0.cmp(&b.0));
    let grads: Vec<Tensor> = params.iter().map(|(_, p)| p.randn_like()).collect();
    let bytes: usize = grads.iter().map(|g| g.numel() * 4).sum();
    if group.is_main() {
        println!(
            "ResNet-18 ({classes} classes): {} gradient tensors, {:.1} MiB; {} processes, Gloo over {}:{}",
            grads.len(),
            bytes as f64 / (1 << 20) as f64,
            group.world_size(),
            launch.master_addr,
            launch.master_port
        );
        println!("| bucket cap (MiB) | buckets | ms per step (median of {reps}) | algorithm bandwidth (GB/s) |");
        println!("|---:|---:|---:|---:|");
    }
    for cap_mb in [1.0, 5.0, 25.0, 100.0] {
        let cap = (cap_mb * (1 << 20) as f64) as usize;
        let buckets = plan_buckets(&grads, cap).len();
        for _ in 0..3 {
            group.average(&grads, cap)?;
        }
        let mut times = Vec::with_capacity(reps);
        for _ in 0..reps {
            group.barrier()?;
            let t = Instant::now();
            group.average(&grads, cap)?;
            times.push(t.elapsed().as_secs_f64() * 1e3);
        }
        // Every rank's median, then the slowest rank's (a step waits for the slowest).
        times.sort_by(f64::total_cmp);
        let median = Tensor::from_slice(&[times[reps / 2]]);
        group.all_reduce_max(&[&median])?;
        let median = median.double_value(&[0]);
        if group.is_main() {
            println!("| {cap_mb:.0} | {buckets} | {median:.1} | {:.2} |", bytes as f64 / (median * 1e-3) / 1e9);
        }
    }
    group.barrier()?;
    Ok(())
}
