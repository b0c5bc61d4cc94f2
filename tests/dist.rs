//! Data-parallel training on c10d's Gloo backend, between real processes on loopback: the
//! collectives themselves, a dead peer, and whole training runs (bit-identical ranks, 2 × 50
//! against 1 × 100, SAMix's Mixer and EMA, resume across world sizes, rank 0 alone writing).
//! A test that needs ranks re-runs its own test binary (or the `samix` binary) as them.
mod common;

use samix::dist::{plan_buckets, Launch, Launcher, ProcessGroup};
use std::collections::HashMap;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};
use tch::{Kind, Tensor};

/// The longest a group of test processes may run before it is killed and the test fails.
const RANKS_BOUND: Duration = Duration::from_secs(240);

/// A free TCP port on loopback (the OS picks it; it is released for rank 0 to bind).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// torchrun's variables for `rank` of `world` on loopback (one node: the local rank is the rank).
fn rank_env(rank: usize, world: usize, port: u16) -> Vec<(String, String)> {
    vec![
        ("RANK".into(), rank.to_string()),
        ("WORLD_SIZE".into(), world.to_string()),
        ("LOCAL_RANK".into(), rank.to_string()),
        ("MASTER_ADDR".into(), "127.0.0.1".into()),
        ("MASTER_PORT".into(), port.to_string()),
    ]
}

/// Starts one `command(rank)` per rank with the launch variables set, and waits for all of them
/// (killing the lot after [`RANKS_BOUND`]).
fn run_ranks(world: usize, command: impl Fn(usize) -> Command) -> Vec<Output> {
    let port = free_port();
    let mut children: Vec<_> = (0..world)
        .map(|r| {
            let mut c = command(r);
            // A variable `command` set itself (a test's override) is kept.
            for (k, v) in rank_env(r, world, port) {
                if !c.get_envs().any(|(set, _)| set.to_string_lossy() == k) {
                    c.env(k, v);
                }
            }
            c.stdout(Stdio::piped()).stderr(Stdio::piped());
            c.spawn().unwrap()
        })
        .collect();
    let start = Instant::now();
    while children.iter_mut().any(|c| c.try_wait().unwrap().is_none()) {
        if start.elapsed() > RANKS_BOUND {
            for c in &mut children {
                let _ = c.kill();
            }
            panic!("ranks still running after {RANKS_BOUND:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    children.into_iter().map(|c| c.wait_with_output().unwrap()).collect()
}

/// Re-runs this test binary's test `name` as the ranks (the test sees `RANK` and plays its part).
fn run_test_as_ranks(name: &str, world: usize) -> Vec<Output> {
    run_ranks(world, |_| {
        let mut c = Command::new(std::env::current_exe().unwrap());
        c.args([name, "--exact", "--nocapture", "--test-threads", "1"]);
        c
    })
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

/// The launch this process is a rank of (a test re-run by [`run_test_as_ranks`]).
fn this_rank() -> Option<ProcessGroup> {
    let launch = Launch::from_env().unwrap()?;
    Some(ProcessGroup::connect(&launch, Duration::from_secs(30)).unwrap())
}

#[test]
fn launch_variables_of_torchrun_and_slurm() {
    let vars = |pairs: &[(&str, &str)]| {
        let map: HashMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Launch::from_vars(|k| map.get(k).cloned())
    };
    assert_eq!(vars(&[]).unwrap(), None);
    let torchrun = [
        ("RANK", "3"),
        ("WORLD_SIZE", "8"),
        ("LOCAL_RANK", "1"),
        ("MASTER_ADDR", "node0"),
        ("MASTER_PORT", "29500"),
        ("TORCHELASTIC_USE_AGENT_STORE", "True"),
        ("TORCHELASTIC_RESTART_COUNT", "2"),
    ];
    let l = vars(&torchrun).unwrap().unwrap();
    assert_eq!((l.launcher, l.rank, l.world_size, l.local_rank), (Launcher::Torchrun, 3, 8, 1));
    assert_eq!((l.master_addr.as_str(), l.master_port, l.agent_store, l.restart), ("node0", 29500, true, 2));
    // SLURM's variables are the fallback; torchrun's win when both are set.
    let slurm = [
        ("SLURM_PROCID", "5"),
        ("SLURM_NTASKS", "16"),
        ("SLURM_STEP_NUM_TASKS", "16"),
        ("SLURM_LOCALID", "1"),
        ("MASTER_ADDR", "n1"),
        ("MASTER_PORT", "1234"),
    ];
    let l = vars(&slurm).unwrap().unwrap();
    assert_eq!((l.launcher, l.rank, l.world_size, l.local_rank, l.agent_store), (Launcher::Slurm, 5, 16, 1, false));
    let both: Vec<_> = torchrun.iter().chain(&slurm).copied().collect();
    assert_eq!(vars(&both).unwrap().unwrap().launcher, Launcher::Torchrun);
    // One process is no launch at all: it runs exactly as without the variables.
    assert_eq!(vars(&[("RANK", "0"), ("WORLD_SIZE", "1")]).unwrap(), None);
    // Nor is a batch script in a SLURM allocation of several tasks (no job step).
    assert_eq!(vars(&[("SLURM_PROCID", "0"), ("SLURM_NTASKS", "4"), ("SLURM_LOCALID", "0")]).unwrap(), None);
    // Incomplete or wrong descriptions name the variable.
    let err = |pairs: &[(&str, &str)]| vars(pairs).unwrap_err().to_string();
    assert!(
        err(&[("RANK", "0"), ("WORLD_SIZE", "2"), ("LOCAL_RANK", "0"), ("MASTER_PORT", "1")]).contains("MASTER_ADDR")
    );
    assert!(err(&[("RANK", "2"), ("WORLD_SIZE", "2")]).contains("RANK is 2"));
    assert!(err(&[("RANK", "0"), ("WORLD_SIZE", "two")]).contains("WORLD_SIZE"));
    let bad_port =
        [("RANK", "0"), ("WORLD_SIZE", "2"), ("LOCAL_RANK", "0"), ("MASTER_ADDR", "h"), ("MASTER_PORT", "0")];
    assert!(err(&bad_port).contains("MASTER_PORT"));
    let step = [("SLURM_PROCID", "0"), ("SLURM_NTASKS", "2"), ("SLURM_STEP_NUM_TASKS", "2"), ("SLURM_LOCALID", "0")];
    assert!(err(&step).contains("MASTER_ADDR"));
}

#[test]
fn buckets_keep_order_kind_and_size() {
    let t = |n: i64, k: Kind| Tensor::zeros([n], (k, tch::Device::Cpu));
    let ts = [t(10, Kind::Float), t(10, Kind::Float), t(30, Kind::Float), t(5, Kind::Double), t(1, Kind::Float)];
    // 80 bytes: the first two floats share a bucket, the 120-byte tensor is alone, kinds split.
    assert_eq!(plan_buckets(&ts, 80), vec![vec![0, 1], vec![2], vec![3], vec![4]]);
    assert_eq!(plan_buckets(&ts, 1 << 20), vec![vec![0, 1, 2], vec![3], vec![4]]);
}

/// Two ranks: sums, maxima, bucketed means and broadcasts of mixed kinds, all-gather, `any`.
#[test]
fn collectives_between_two_processes() {
    let Some(pg) = this_rank() else {
        for o in run_test_as_ranks("collectives_between_two_processes", 2) {
            assert!(o.status.success(), "a rank failed:\n{}", text(&o));
            assert!(text(&o).contains("1 passed"), "{}", text(&o));
        }
        return;
    };
    let r = pg.rank() as f64;
    let t = Tensor::from_slice(&[1.0f32 + r as f32, 10.0]);
    pg.all_reduce_sum(&[&t]).unwrap();
    assert_eq!(Vec::<f32>::try_from(&t).unwrap(), vec![3.0, 20.0]);
    let m = Tensor::from_slice(&[r, -r]);
    pg.all_reduce_max(&[&m]).unwrap();
    assert_eq!(Vec::<f64>::try_from(&m).unwrap(), vec![1.0, 0.0]);
    // Gradients of several shapes and two kinds, in 64-byte buckets: each becomes the mean.
    let grads: Vec<Tensor> = vec![
        Tensor::full([3, 4], 2.0 * r + 1.0, (Kind::Float, tch::Device::Cpu)),
        Tensor::arange(20, (Kind::Float, tch::Device::Cpu)) * (r + 1.0),
        Tensor::full([5], 4.0 * r, (Kind::Double, tch::Device::Cpu)),
    ];
    pg.average(&grads, 64).unwrap();
    assert_eq!(grads[0], Tensor::full([3, 4], 2.0, (Kind::Float, tch::Device::Cpu)));
    assert_eq!(grads[1], Tensor::arange(20, (Kind::Float, tch::Device::Cpu)) * 1.5);
    assert_eq!(grads[2], Tensor::full([5], 2.0, (Kind::Double, tch::Device::Cpu)));
    let vars = vec![Tensor::full([7], r + 5.0, (Kind::Float, tch::Device::Cpu)), Tensor::from_slice(&[r as i64, 9])];
    pg.broadcast_from_main(&vars, 16).unwrap();
    assert_eq!(Vec::<f32>::try_from(&vars[0]).unwrap(), vec![5.0; 7]);
    assert_eq!(Vec::<i64>::try_from(&vars[1]).unwrap(), vec![0, 9]);
    let gathered = pg.all_gather(&Tensor::from_slice(&[r as f32, 2.0 * r as f32])).unwrap();
    assert_eq!(gathered.size(), vec![2, 2]);
    assert_eq!(Vec::<f32>::try_from(&gathered.reshape([-1])).unwrap(), vec![0.0, 0.0, 1.0, 2.0]);
    assert!(pg.any(pg.rank() == 1).unwrap());
    assert!(!pg.any(false).unwrap());
    assert_eq!(pg.sum_f64(&[0.5, r]).unwrap(), vec![1.0, 1.0]);
    pg.barrier().unwrap();
}

/// A rank that dies mid-run ends the other's next collective with an error (not a hang).
#[test]
fn a_dead_peer_ends_the_other_rank_with_an_error() {
    let Some(pg) = this_rank() else {
        let outs = run_test_as_ranks("a_dead_peer_ends_the_other_rank_with_an_error", 2);
        assert!(!outs[1].status.success(), "rank 1 was meant to die:\n{}", text(&outs[1]));
        let survivor = text(&outs[0]);
        assert!(outs[0].status.success(), "rank 0 should have seen the error:\n{survivor}");
        assert!(survivor.contains("1 passed"), "{survivor}");
        return;
    };
    pg.barrier().unwrap();
    if pg.rank() == 1 {
        std::process::exit(3);
    }
    let t = Tensor::ones([4], (Kind::Float, tch::Device::Cpu));
    let err = pg.all_reduce_sum(&[&t]).unwrap_err().to_string();
    assert!(err.contains("rank 0 of 2") && err.contains("another process of the run has stopped"), "{err}");
}

/// Trains `config` with the `samix` binary as `world` ranks in `out` (extra CLI args appended).
fn train_ranks(world: usize, config: &Path, out: &Path, extra: &[&str]) -> Vec<Output> {
    run_ranks(world, |_| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_samix"));
        c.args(["--quiet", "train", "--config"]).arg(config).arg("--out").arg(out).args(extra);
        c
    })
}

/// Starts `samix train` as rank `rank` of `world` (on `port`) without waiting for it.
fn spawn_rank(config: &Path, out: &Path, rank: usize, world: usize, port: u16) -> std::process::Child {
    Command::new(env!("CARGO_BIN_EXE_samix"))
        .args(["--quiet", "train", "--config"])
        .arg(config)
        .arg("--out")
        .arg(out)
        .envs(rank_env(rank, world, port))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn write_config(dir: &Path, name: &str, body: &str) -> std::path::PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, body).unwrap();
    p
}

fn load_vars(path: &Path) -> HashMap<String, Tensor> {
    Tensor::read_safetensors(path).unwrap().into_iter().collect()
}

/// A tiny supervised run on a Fashion-MNIST slice with GroupNorm and no mixing: nothing in a
/// step depends on how the batch is split over processes, so any world size trains the same
/// weights up to float summation order.
fn split_free_config(extra: &str) -> String {
    common::tiny_fashion_config(400, 100, 2, "policy = \"none\"")
        .replace("blocks = [1, 1, 1, 1]", "blocks = [1, 1, 1, 1]\nnorm = \"group\"\nnorm_groups = 4")
        .replace("batch_size = 50", "batch_size = 100")
        + extra
}

/// The weights of a run's latest checkpoint.
fn final_weights(run: &Path) -> HashMap<String, Tensor> {
    let ckpt = samix::train::checkpoint::latest(run).unwrap().expect("a checkpoint");
    load_vars(&ckpt.dir.join(samix::train::checkpoint::MODEL_FILE))
}

fn max_difference(a: &HashMap<String, Tensor>, b: &HashMap<String, Tensor>) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter().map(|(k, t)| (t - &b[k]).abs().max().double_value(&[])).fold(0.0, f64::max)
}

fn succeeded(outs: &[Output]) {
    for (r, o) in outs.iter().enumerate() {
        assert!(o.status.success(), "rank {r} failed:\n{}", text(o));
    }
}

/// 2 processes × 50 images train what 1 process × 100 does; a run stopped after one epoch
/// resumes at the other world size (2 → 1 and 1 → 2) to the same weights. Rank 0 alone reports.
#[test]
fn two_by_fifty_trains_like_one_by_hundred_and_resumes_across_world_sizes() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "c.toml", &split_free_config(""));
    let one = |out: &Path, extra: &[&str]| {
        let o = Command::new(env!("CARGO_BIN_EXE_samix"))
            .args(["--quiet", "train", "--config"])
            .arg(&config)
            .arg("--out")
            .arg(out)
            .args(extra)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", text(&o));
    };
    let single = dir.path().join("single");
    one(&single, &[]);
    let reference = final_weights(&single);

    let two = dir.path().join("two");
    let outs = train_ranks(2, &config, &two, &[]);
    succeeded(&outs);
    // Only rank 0 speaks (and writes the run directory).
    assert!(outs[1].stdout.is_empty() && outs[1].stderr.is_empty(), "rank 1 printed:\n{}", text(&outs[1]));
    let d = max_difference(&final_weights(&two), &reference);
    assert!(d < 1e-4, "2 × 50 differs from 1 × 100 by {d}");
    let m2 = std::fs::read_to_string(two.join("metrics.jsonl")).unwrap();
    let m1 = std::fs::read_to_string(single.join("metrics.jsonl")).unwrap();
    assert_eq!(m1.lines().count(), 2);
    assert_eq!(m2.lines().count(), 2);
    // The test split is evaluated in shards and reduced: the same accuracy over the same 100 images.
    let acc = |line: &str| serde_json::from_str::<serde_json::Value>(line).unwrap()["test_acc1"].as_f64().unwrap();
    assert!((acc(m1.lines().last().unwrap()) - acc(m2.lines().last().unwrap())).abs() <= 1.0);

    // 2 processes for epoch 1, then 1 process for epoch 2.
    let two_then_one = dir.path().join("two_then_one");
    succeeded(&train_ranks(2, &config, &two_then_one, &["--stop-after", "1"]));
    one(&two_then_one, &["--resume"]);
    // 1 process for epoch 1, then 2 processes for epoch 2.
    let one_then_two = dir.path().join("one_then_two");
    one(&one_then_two, &["--stop-after", "1"]);
    succeeded(&train_ranks(2, &config, &one_then_two, &["--resume"]));
    for run in [&two_then_one, &one_then_two] {
        let d = max_difference(&final_weights(run), &reference);
        assert!(d < 1e-4, "{} differs from the single-process run by {d}", run.display());
        let lines = std::fs::read_to_string(run.join("metrics.jsonl")).unwrap().lines().count();
        assert_eq!(lines, 2, "{}", run.display());
    }
}

/// Online SAMix on 2 processes: the Mixer's, both networks' and the EMA's weights and statistics
/// stay identical on the ranks (every checkpoint compares them and fails the run otherwise), and
/// the run ends like a single-process one (metrics, masks pictured by rank 0).
#[test]
fn samix_on_two_processes_keeps_mixer_and_ema_identical() {
    let dir = tempfile::tempdir().unwrap();
    let body = common::tiny_fashion_config(200, 50, 2, r#"policy = "samix""#);
    let config = write_config(dir.path(), "c.toml", &body);
    let run = dir.path().join("run");
    let outs = train_ranks(2, &config, &run, &["--set", "train.checkpoint_every=1"]);
    succeeded(&outs);
    let m = std::fs::read_to_string(run.join("metrics.jsonl")).unwrap();
    assert_eq!(m.lines().count(), 2);
    assert!(m.contains("acc1_one_k"), "{m}");
    assert!(run.join("visuals/masks_epoch_0002.png").is_file());
    let vars = final_weights(&run);
    assert!(vars.keys().any(|k| k.starts_with("mixer.")) && vars.keys().any(|k| k.starts_with("k.")));
}

/// SAMix-SSL on two processes: every process enqueues the keys of both (all-gathered), so the
/// queue, like the networks and the Mixer, is bit-identical on both at every checkpoint (the run's
/// replica check would stop it otherwise), and the k-NN monitor and the backbone come out.
#[test]
fn self_supervised_samix_on_two_processes_keeps_one_queue() {
    let dir = tempfile::tempdir().unwrap();
    let body = common::tiny_fashion_config(192, 64, 2, "policy = \"samix\"\nlam_margin = 0.0")
        .replace("crop_padding = 2", "image_size = 28\nrandom_resized_crop = true\nrrc_scale = [0.2, 1.0]")
        .replace("padding_mode = \"zeros\"\n", "")
        .replace("batch_size = 50", "batch_size = 32")
        + "[ssl]\nhidden_dim = 32\nfeature_dim = 16\nqueue_size = 96\nknn_k = 20\n";
    let config = write_config(dir.path(), "c.toml", &body);
    let run = dir.path().join("run");
    let outs = train_ranks(2, &config, &run, &[]);
    succeeded(&outs);
    let m = std::fs::read_to_string(run.join("metrics.jsonl")).unwrap();
    assert_eq!(m.lines().count(), 2);
    assert!(m.contains("knn_acc1") && m.contains("loss_mixer"), "{m}");
    assert!(run.join("backbone.safetensors").is_file());
    let vars = final_weights(&run);
    assert_eq!(vars["moco.queue"].size(), [16, 96]);
}

/// A rank killed mid-run ends the other within the timeout, with an error that says so.
#[test]
fn killing_one_rank_ends_the_other_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let body = common::tiny_fashion_config(
        2000,
        50,
        20,
        r#"policy = "mixup"
alpha = 1.0"#,
    ) + "[dist]\ntimeout_s = 20\n";
    let config = write_config(dir.path(), "c.toml", &body);
    let run = dir.path().join("run");
    let port = free_port();
    let (mut r0, mut r1) = (spawn_rank(&config, &run, 0, 2, port), spawn_rank(&config, &run, 1, 2, port));
    // Once the first epoch is recorded both ranks are mid-run; then rank 1 dies.
    let start = Instant::now();
    while !std::fs::read_to_string(run.join("metrics.jsonl")).is_ok_and(|m| !m.is_empty()) {
        assert!(start.elapsed() < RANKS_BOUND, "the run never finished an epoch");
        assert!(r0.try_wait().unwrap().is_none(), "rank 0 ended early");
        std::thread::sleep(Duration::from_millis(50));
    }
    r1.kill().unwrap();
    let _ = r1.wait();
    while r0.try_wait().unwrap().is_none() {
        if start.elapsed() > RANKS_BOUND {
            let _ = r0.kill();
            panic!("rank 0 still running after its peer died");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let o = r0.wait_with_output().unwrap();
    assert!(!o.status.success());
    let err = text(&o);
    assert!(err.contains("rank 0") && err.contains("another process of the run has stopped"), "{err}");
}

/// On a GPU, two ranks sharing it exchange CUDA gradients through Gloo's host copies and still
/// train what one process does (the GPU machine has one card; NCCL refuses two ranks on one).
#[test]
#[ignore = "needs CUDA"]
fn two_ranks_on_one_gpu_train_like_one_process() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "c.toml", &split_free_config(""));
    let single = dir.path().join("single");
    let o = Command::new(env!("CARGO_BIN_EXE_samix"))
        .args(["--quiet", "train", "--device", "cuda", "--config"])
        .arg(&config)
        .arg("--out")
        .arg(&single)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let two = dir.path().join("two");
    // LOCAL_RANK 1 would ask for a second GPU: both ranks use device 0 here.
    let outs = run_ranks(2, |_| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_samix"));
        c.args(["--quiet", "train", "--device", "cuda", "--config"]).arg(&config).arg("--out").arg(&two);
        c.env("LOCAL_RANK", "0");
        c
    });
    succeeded(&outs);
    let d = max_difference(&final_weights(&two), &final_weights(&single));
    assert!(d < 1e-3, "2 ranks on one GPU differ from 1 process by {d}");
}

/// A 2-process run stopped by SIGTERM (as a launcher forwards it) resumes on 2 processes to the
/// weights of an uninterrupted run, bit for bit: every rank's mixing stream, the epoch's sums and
/// the optimiser state come back (the stop usually lands mid-epoch; at an epoch's end the
/// promise is the same).
#[test]
fn a_stopped_two_process_run_resumes_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let body = common::tiny_fashion_config(6000, 100, 3, "policy = \"mixup\"\nalpha = 1.0");
    let config = write_config(dir.path(), "c.toml", &body);
    let whole = dir.path().join("whole");
    succeeded(&train_ranks(2, &config, &whole, &[]));

    let stopped = dir.path().join("stopped");
    let port = free_port();
    let mut ranks: Vec<_> = (0..2).map(|r| spawn_rank(&config, &stopped, r, 2, port)).collect();
    let start = Instant::now();
    while !std::fs::read_to_string(stopped.join("metrics.jsonl")).is_ok_and(|m| !m.is_empty()) {
        assert!(start.elapsed() < RANKS_BOUND, "the run never finished an epoch");
        std::thread::sleep(Duration::from_millis(20));
    }
    for r in &ranks {
        // SAFETY: plain kill(2) on our own children.
        unsafe { libc::kill(r.id() as i32, libc::SIGTERM) };
    }
    for r in ranks.iter_mut() {
        while r.try_wait().unwrap().is_none() {
            assert!(start.elapsed() < RANKS_BOUND, "a rank did not stop");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    let outs: Vec<Output> = ranks.into_iter().map(|r| r.wait_with_output().unwrap()).collect();
    let said = text(&outs[0]);
    if said.contains("stopped at") {
        assert_eq!(outs[0].status.code(), Some(143), "{said}");
        assert!(text(&outs[1]).contains("rank 0 wrote the checkpoint"), "{}", text(&outs[1]));
        succeeded(&train_ranks(2, &config, &stopped, &["--resume"]));
    } else {
        // The run had finished before the signal arrived: nothing to resume.
        succeeded(&outs);
    }
    let (a, b) = (final_weights(&whole), final_weights(&stopped));
    assert_eq!(a.len(), b.len());
    for (name, t) in &a {
        assert!(t.equal(&b[name]), "`{name}` differs after the resume");
    }
}
