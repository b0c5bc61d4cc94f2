//! Weights shared with torchvision (issue 11, item 6): torchvision's own ResNet-18, ResNet-50 and
//! ResNeXt-50 32x4d
//! (random weights and statistics, built in the venv's python) → `samix convert` → a samix
//! network giving torchvision's logits, and back → torchvision loading samix's file strictly and
//! giving its logits again; `model.init_from` loading all but the classifier; bad files named.
mod common;

use samix::model::{interop, Arch, ModelConfig, Network, Stem};
use std::path::Path;
use tch::nn::{ModuleT, VarStore};
use tch::{Device, Tensor};

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
    let n = interop::init_from(&target, "q.", &file).unwrap();
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
    let err = interop::init_from(&target, "q.", &wrong).unwrap_err().to_string();
    assert!(err.contains("r50.safetensors") && err.contains("model.init_from"), "{err}");
    let missing = interop::init_from(&target, "q.", &dir.path().join("nope.safetensors")).unwrap_err().to_string();
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
        match samix::train::input_policy(&cfg.mix, Device::Cpu).unwrap() {
            samix::train::Policy::AttentiveMix(p) => p,
            _ => panic!("not AttentiveMix"),
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
