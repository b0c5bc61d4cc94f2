//! Weights shared with torchvision (issue 11, item 6): torchvision's own ResNet-18, ResNet-50 and
//! ResNeXt-50 32x4d
//! (random weights and statistics, built in the venv's python) → `samix convert` → a samix
//! network giving torchvision's logits, and back → torchvision loading samix's file strictly and
//! giving its logits again; `model.init_from` loading all but the classifier; bad files named;
//! `samix convert --from samix` of a run: checksummed as every checkpoint read, and the deployed
//! network of an online SAMix run.
mod common;

use samix::config::TrainConfig;
use samix::model::{interop, Arch, ModelConfig, Network, Stem};
use std::collections::HashMap;
use std::path::Path;
use tch::nn::{ModuleT, VarStore};
use tch::{Device, Kind, Tensor};

fn oracle(args: &[&str]) -> String {
    let script = common::oracle_script("torchvision_resnet.py");
    let args: Vec<&std::ffi::OsStr> =
        std::iter::once(script.as_os_str()).chain(args.iter().map(|a| a.as_ref())).collect();
    String::from_utf8_lossy(&common::venv_python(&args)).trim().to_string()
}

fn convert(args: &[&str], cwd: &Path) {
    let o = common::samix_cli(&[&["convert"], args].concat(), cwd);
    assert!(o.status.success(), "samix convert: {}", String::from_utf8_lossy(&o.stderr));
}

fn round_trip(arch_name: &str, arch: Arch) {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    oracle(&["make", arch_name, d]);
    convert(
        &[
            "--from",
            "torchvision",
            "--to",
            "samix",
            "--arch",
            arch_name,
            "torchvision.safetensors",
            "samix.safetensors",
        ],
        dir.path(),
    );

    // samix's network with the converted weights gives torchvision's logits.
    let mut vs = VarStore::new(Device::Cpu);
    let cfg = ModelConfig { stem: Stem::Imagenet, ..ModelConfig::new(arch) };
    let net = Network::new(&vs.root(), &cfg, 3, 1000).unwrap();
    vs.load(dir.path().join("samix.safetensors")).unwrap();
    let io: std::collections::HashMap<String, Tensor> =
        Tensor::read_safetensors(dir.path().join("io.safetensors")).unwrap().into_iter().collect();
    let logits = tch::no_grad(|| net.forward_t(&io["input"], false));
    let diff = (&logits - &io["logits"]).abs().max().double_value(&[]);
    assert!(diff < 1e-5, "{arch_name}: samix's logits differ from torchvision's by {diff}");

    // And back: torchvision loads samix's export strictly (every key, counters included).
    convert(
        &["--from", "samix", "--to", "torchvision", "--arch", arch_name, "samix.safetensors", "back.safetensors"],
        dir.path(),
    );
    let back: f64 = oracle(&["check", arch_name, d, &format!("{d}/back.safetensors")]).parse().unwrap();
    assert!(back < 1e-5, "{arch_name}: torchvision's logits after the round trip differ by {back}");
}

#[test]
fn torchvision_resnet18_round_trip() {
    round_trip("resnet18", Arch::Resnet18);
}

#[test]
fn torchvision_resnet50_round_trip() {
    round_trip("resnet50", Arch::Resnet50);
}

#[test]
fn torchvision_resnext50_round_trip() {
    round_trip("resnext50_32x4d", Arch::Resnext50_32x4d);
}

/// `model.init_from`: every variable but the classifier comes from the file; the classifier keeps
/// its fresh initialisation (a new label set); a file of another architecture is refused by key.
#[test]
fn init_from_loads_all_but_the_classifier_and_refuses_other_architectures() {
    let _lock = common::torch_rng_lock();
    let dir = tempfile::tempdir().unwrap();
    let cfg = ModelConfig { stem: Stem::Imagenet, ..ModelConfig::new(Arch::Resnet18) };
    tch::manual_seed(1);
    let source = VarStore::new(Device::Cpu);
    Network::new(&source.root(), &cfg, 3, 1000).unwrap();
    let file = dir.path().join("r18.safetensors");
    interop::save(&file, source.variables().into_iter().collect()).unwrap();

    tch::manual_seed(2);
    let target = VarStore::new(Device::Cpu);
    Network::new(&(target.root() / "q"), &cfg, 3, 10).unwrap();
    let before_fc = target.variables()["q.fc.weight"].copy();
    let n = interop::init_from(&target, "q.", "fc.", &file).unwrap();
    let (src, dst) = (source.variables(), target.variables());
    assert_eq!(n, dst.len() - 2, "everything but fc.weight and fc.bias");
    for (name, t) in &dst {
        let key = &name["q.".len()..];
        if key.starts_with("fc.") {
            continue;
        }
        assert!(t.equal(&src[key]), "`{name}` was not loaded");
    }
    assert!(dst["q.fc.weight"].equal(&before_fc), "the classifier must start fresh");

    // A ResNet-50 file for a ResNet-18: refused, naming the first mismatched variable.
    let r50 = VarStore::new(Device::Cpu);
    Network::new(&r50.root(), &ModelConfig { stem: Stem::Imagenet, ..ModelConfig::new(Arch::Resnet50) }, 3, 1000)
        .unwrap();
    let wrong = dir.path().join("r50.safetensors");
    interop::save(&wrong, r50.variables().into_iter().collect()).unwrap();
    let err = interop::init_from(&target, "q.", "fc.", &wrong).unwrap_err().to_string();
    assert!(err.contains("r50.safetensors") && err.contains("model.init_from"), "{err}");
    let missing =
        interop::init_from(&target, "q.", "fc.", &dir.path().join("nope.safetensors")).unwrap_err().to_string();
    assert!(missing.contains("model.init_from") && missing.contains("nope.safetensors"), "{missing}");
    // `samix convert` refuses a state dict of another architecture, naming the key.
    let o = common::samix_cli(
        &[
            "convert",
            "--from",
            "torchvision",
            "--to",
            "samix",
            "--arch",
            "resnet18",
            "r50.safetensors",
            "out.safetensors",
        ],
        dir.path(),
    );
    assert!(!o.status.success());
    let said = String::from_utf8_lossy(&o.stderr);
    assert!(said.contains("r50.safetensors") && said.contains("resnet18"), "{said}");
    assert!(!dir.path().join("out.safetensors").exists(), "nothing written on error");
}

/// AttentiveMix+ as the reference runs it (issue 11, item 5): an ImageNet-stem ResNet-18 from a
/// weights file (what `samix convert` makes of torchvision's) scores a 7×7 grid of the batch
/// upsampled to 224; without the upsampling the same net sees one cell at 32 px.
#[test]
fn attentivemix_scores_with_an_imagenet_resnet18_file_at_224() {
    let _lock = common::torch_rng_lock();
    let dir = tempfile::tempdir().unwrap();
    tch::manual_seed(4);
    let vs = VarStore::new(Device::Cpu);
    Network::new(&vs.root(), &ModelConfig { stem: Stem::Imagenet, ..ModelConfig::new(Arch::Resnet18) }, 3, 1000)
        .unwrap();
    let file = dir.path().join("r18_imagenet.safetensors");
    interop::save(&file, vs.variables().into_iter().collect()).unwrap();
    let policy = |upsample: &str| {
        let text = format!(
            "[data]\ndataset = \"cifar100\"\n[model]\narch = \"resnet18\"\n[train]\nepochs = 1\nbatch_size = 4\n[mix]\npolicy = \"attentivemix\"\nalpha = 2.0\ncheckpoint = \"{}\"\n{upsample}\n",
            file.display()
        );
        let cfg = samix::config::TrainConfig::parse(&text, &[]).unwrap();
        match &cfg.mix {
            samix::config::MixConfig::Attentivemix(c) => samix::train::attentive_mix(c, Device::Cpu).unwrap(),
            other => panic!("not AttentiveMix: {other:?}"),
        }
    };
    let images = Tensor::randn([4, 3, 32, 32], (tch::Kind::Float, Device::Cpu));
    let at_224 = policy("upsample_to = 224").first_weight(&images, 0.5);
    assert_eq!(at_224.size(), vec![4, 1, 32, 32]);
    // ⌊49 · 0.5⌋ = 24 of 49 cells, nearest-resampled to 32 px (cells of 4 or 5 pixels a side).
    for i in 0..4 {
        let kept = at_224.get(i).mean(tch::Kind::Float).double_value(&[]);
        assert!((kept - 24.0 / 49.0).abs() < 0.06, "image {i} keeps {kept}");
    }
    let at_32 = policy("").first_weight(&images, 0.5);
    assert_eq!(at_32.mean(tch::Kind::Float).double_value(&[]), 1.0, "one cell at 32 px: kept whole");
}

/// A finished 1-epoch run of a tiny ResNet-18 on a Fashion-MNIST slice, in `dir/run`.
fn tiny_run(dir: &Path, mix: &str) -> TrainConfig {
    let cfg = TrainConfig::parse(&common::tiny_fashion_config(100, 50, 1, mix), &[]).unwrap();
    common::train_run(&cfg, &dir.join("run"), false, false, None).unwrap();
    cfg
}

/// `samix convert --from samix ... OUT` in `dir`: whether it succeeded, its stdout and stderr.
fn convert_from_samix(input: &str, out: &str, dir: &Path) -> (bool, String, String) {
    let o = common::samix_cli(&["convert", "--from", "samix", "--to", "torchvision", input, out], dir);
    (o.status.success(), String::from_utf8_lossy(&o.stdout).into(), String::from_utf8_lossy(&o.stderr).into())
}

/// `samix convert --from samix` reads a checkpoint as `--resume`, `eval` and `predict` do
/// (issue 24, R7): one flipped byte in the weights is refused, naming the file and its checksum,
/// whether the input is the run, the checkpoint folder or the checkpoint's model file, and
/// nothing is written; the file put back converts from each.
#[test]
fn convert_refuses_a_corrupted_checkpoint() {
    let _lock = common::torch_rng_lock();
    let dir = tempfile::tempdir().unwrap();
    tiny_run(dir.path(), r#"policy = "none""#);
    let model = dir.path().join("run/checkpoints/epoch-0001/model.safetensors");
    let good = std::fs::read(&model).unwrap();
    let mut bad = good.clone();
    let last = bad.len() - 1;
    bad[last] ^= 0x40;
    std::fs::write(&model, &bad).unwrap();
    let inputs = ["run", "run/checkpoints/epoch-0001", "run/checkpoints/epoch-0001/model.safetensors"];
    for input in inputs {
        let (ok, _, err) = convert_from_samix(input, "out.safetensors", dir.path());
        assert!(!ok && err.contains("checksum") && err.contains("model.safetensors"), "{input}: {err}");
        assert!(!dir.path().join("out.safetensors").exists(), "{input}: nothing written");
    }
    std::fs::write(&model, &good).unwrap();
    for input in inputs {
        let (ok, _, err) = convert_from_samix(input, "out.safetensors", dir.path());
        assert!(ok, "{input}: {err}");
    }
}

/// `samix convert --from samix` of an online SAMix run (issue 24, R8), whose checkpoint holds the
/// online network with its mix head (`q.*`), the EMA copy with its own (`k.*`) and the Mixer
/// (`mixer.*`): the export is the network `eval` deploys — the EMA copy's classifier network,
/// every variable and nothing else, values as in the checkpoint, with torchvision's BatchNorm
/// counters — and one line names what was left out. What it exports is checked as strictly as
/// before: an unknown tensor under `k.` is refused by name.
#[test]
fn convert_exports_the_deployed_network_of_an_online_samix_run() {
    let _lock = common::torch_rng_lock();
    let dir = tempfile::tempdir().unwrap();
    let cfg = tiny_run(dir.path(), r#"policy = "samix""#);
    let (ok, said, err) = convert_from_samix("run", "tv.safetensors", dir.path());
    assert!(ok, "{err}");
    let left: Vec<&str> = said.lines().filter(|l| l.contains("left out")).collect();
    assert!(left.len() == 1 && ["q.*", "k.head_mix.*", "mixer.*"].iter().all(|p| left[0].contains(p)), "{said}");

    let vs = VarStore::new(Device::Cpu);
    Network::new(&vs.root(), &cfg.model, 1, 10).unwrap();
    let mut want: Vec<String> = vs.variables().into_keys().collect();
    let counters: Vec<String> = want
        .iter()
        .filter_map(|n| n.strip_suffix(".running_mean"))
        .map(|l| format!("{l}.num_batches_tracked"))
        .collect();
    want.extend(counters);
    want.sort();
    let exported = Tensor::read_safetensors(dir.path().join("tv.safetensors")).unwrap();
    let mut names: Vec<&String> = exported.iter().map(|(n, _)| n).collect();
    names.sort();
    assert_eq!(names, want.iter().collect::<Vec<_>>(), "the deployed network's variables, nothing else");
    let model = dir.path().join("run/checkpoints/epoch-0001/model.safetensors");
    let stored: HashMap<String, Tensor> = Tensor::read_safetensors(&model).unwrap().into_iter().collect();
    for (name, t) in exported.iter().filter(|(n, _)| !n.ends_with(".num_batches_tracked")) {
        assert!(t.equal(&stored[&format!("k.{name}")]), "`{name}` is not the EMA network's");
    }

    // An unknown tensor under `k.` (with the checkpoint's checksum made to match) is refused.
    let mut tensors: Vec<(String, Tensor)> = stored.into_iter().collect();
    tensors.push(("k.layer1.0.extra".into(), Tensor::zeros([2], (Kind::Float, Device::Cpu))));
    Tensor::write_safetensors(&tensors, &model).unwrap();
    let sha = samix::train::checkpoint::sha256_file(&model).unwrap();
    common::edit_state(&model.with_file_name("state.json"), |s| s["files"]["model.safetensors"] = sha.into());
    let (ok, _, err) = convert_from_samix("run", "extra.safetensors", dir.path());
    assert!(!ok && err.contains("layer1.0.extra"), "{err}");
    assert!(!dir.path().join("extra.safetensors").exists());
}
