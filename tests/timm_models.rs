//! The transformers and ConvNeXt against timm's own models (issue 26): timm's DeiT-T, Swin-T and
//! ConvNeXt-T (random weights, LayerNorm affines and layer scales included) → `samix convert`
//! → samix's network giving timm's logits, and back → timm loading samix's file strictly and
//! giving them again; small variants (a 2-block ViT, a ConvNeXt with the reference's CIFAR stem)
//! through the library, with the stage maps SAMix's Mixer reads equal to timm's
//! `forward_intermediates`; wrong names and shapes refused by name; `model.init_from` starting
//! the classifier afresh.
mod common;

use samix::model::{interop, Arch, ModelConfig, Network, StagedNet, Stem};
use std::collections::HashMap;
use std::path::Path;
use tch::nn::{ModuleT, VarStore};
use tch::{Device, Tensor};

fn oracle(args: &[&str]) -> String {
    let script = common::oracle_script("timm_models.py");
    let args: Vec<&std::ffi::OsStr> =
        std::iter::once(script.as_os_str()).chain(args.iter().map(|a| a.as_ref())).collect();
    String::from_utf8_lossy(&common::venv_python(&args)).trim().to_string()
}

fn tensors(path: &Path) -> HashMap<String, Tensor> {
    Tensor::read_safetensors(path).unwrap().into_iter().collect()
}

/// samix's network of `cfg` with the weights of `file`, and the largest difference of its
/// evaluation-mode logits from timm's on the stored input.
fn logits_difference(cfg: &ModelConfig, classes: i64, file: &Path, dir: &Path) -> (Network, f64) {
    let mut vs = VarStore::new(Device::Cpu);
    let net = Network::new(&vs.root(), cfg, 3, classes).unwrap();
    vs.load(file).unwrap();
    let io = tensors(&dir.join("io.safetensors"));
    let logits = tch::no_grad(|| net.forward_t(&io["input"], false));
    (net, (&logits - &io["logits"]).abs().max().double_value(&[]))
}

fn convert(args: &[&str], cwd: &Path) {
    let o = common::samix_cli(&[&["convert"], args].concat(), cwd);
    assert!(o.status.success(), "samix convert: {}", String::from_utf8_lossy(&o.stderr));
}

fn round_trip(model: &str, arch: &str) {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    oracle(&["make", model, d]);
    let to_samix = ["--from", "timm", "--to", "samix", "--arch", arch, "timm.safetensors", "samix.safetensors"];
    convert(&to_samix, dir.path());
    let cfg = ModelConfig { stem: Stem::Imagenet, ..ModelConfig::new(serde_json::from_value(arch.into()).unwrap()) };
    let (_, diff) = logits_difference(&cfg, 1000, &dir.path().join("samix.safetensors"), dir.path());
    assert!(diff < 1e-4, "{model}: samix's logits differ from timm's by {diff}");

    let to_timm = ["--from", "samix", "--to", "timm", "--arch", arch, "samix.safetensors", "back.safetensors"];
    convert(&to_timm, dir.path());
    let back: f64 = oracle(&["check", model, d, &format!("{d}/back.safetensors")]).parse().unwrap();
    assert!(back < 1e-4, "{model}: timm's logits after the round trip differ by {back}");
}

#[test]
fn timm_deit_tiny_round_trip() {
    round_trip("deit_tiny", "deit_tiny");
}

#[test]
fn timm_convnext_tiny_round_trip() {
    round_trip("convnext_tiny", "convnext_tiny");
}

#[test]
fn timm_swin_tiny_round_trip() {
    round_trip("swin_tiny", "swin_tiny");
}

fn small_vit() -> ModelConfig {
    ModelConfig {
        base_width: Some(48),
        depth: Some(2),
        heads: Some(3),
        patch_size: Some(8),
        image_size: Some(32),
        ..ModelConfig::new(Arch::DeitTiny)
    }
}

fn small_convnext() -> ModelConfig {
    ModelConfig { base_width: Some(16), blocks: Some(vec![1, 1, 2, 1]), ..ModelConfig::new(Arch::ConvnextTiny) }
}

/// A small variant: timm's weights checked and loaded by the library, the logits and the map of
/// stage `stage` (what the Mixer reads) equal to timm's.
fn small_variant(model: &str, cfg: &ModelConfig, stage: usize) {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    oracle(&["make", model, d]);
    let timm_file = dir.path().join("timm.safetensors");
    let weights = interop::import_torchvision(&timm_file, cfg).unwrap();
    assert_eq!((weights.in_channels, weights.num_classes), (3, 10));
    let (net, diff) = logits_difference(cfg, 10, &timm_file, dir.path());
    assert!(diff < 1e-4, "{model}: samix's logits differ from timm's by {diff}");

    oracle(&["features", model, d, &stage.to_string()]);
    let timm_map = &tensors(&dir.path().join("features.safetensors"))["map"];
    let io = tensors(&dir.path().join("io.safetensors"));
    let map = tch::no_grad(|| net.features(&io["input"], false, &[stage]).1.remove(0));
    assert_eq!(map.size(), timm_map.size(), "{model}: stage {stage}'s map");
    let diff = (&map - timm_map).abs().max().double_value(&[]);
    assert!(diff < 1e-4, "{model}: stage {stage}'s map differs from timm's by {diff}");
}

fn small_swin() -> ModelConfig {
    ModelConfig {
        base_width: Some(24),
        heads: Some(2),
        blocks: Some(vec![2, 2]),
        patch_size: Some(2),
        window: Some(4),
        image_size: Some(32),
        ..ModelConfig::new(Arch::SwinTiny)
    }
}

#[test]
fn small_swin_with_shifted_windows_matches_timm_with_its_stage_maps() {
    small_variant("swin_small_test", &small_swin(), 0);
}

#[test]
fn small_vit_matches_timm_with_its_block_maps() {
    small_variant("vit_small_test", &small_vit(), 0);
}

#[test]
fn convnext_with_the_cifar_stem_matches_timm_with_its_stage_maps() {
    small_variant("convnext_cifar_test", &ModelConfig { stem: Stem::Cifar, ..small_convnext() }, 2);
}

/// A state dict with a renamed or reshaped variable is refused naming it, by the library and by
/// `samix convert` (which then writes nothing).
#[test]
fn wrong_names_and_shapes_are_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    oracle(&["make", "vit_small_test", d]);
    let mut state = tensors(&dir.path().join("timm.safetensors"));
    let qkv = state.remove("blocks.1.attn.qkv.weight").unwrap();
    let renamed = dir.path().join("renamed.safetensors");
    let mut named: Vec<(String, Tensor)> = state.iter().map(|(n, t)| (n.clone(), t.shallow_clone())).collect();
    named.push(("blocks.1.attn.qkv_w".into(), qkv.shallow_clone()));
    interop::save(&renamed, named).unwrap();
    let err = interop::import_torchvision(&renamed, &small_vit()).err().unwrap().to_string();
    assert!(err.contains("renamed.safetensors") && err.contains("blocks.1.attn.qkv.weight"), "{err}");

    let reshaped = dir.path().join("reshaped.safetensors");
    let mut named: Vec<(String, Tensor)> = state.iter().map(|(n, t)| (n.clone(), t.shallow_clone())).collect();
    named.push(("blocks.1.attn.qkv.weight".into(), qkv.narrow(0, 0, 96)));
    interop::save(&reshaped, named).unwrap();
    let err = interop::import_torchvision(&reshaped, &small_vit()).err().unwrap().to_string();
    assert!(err.contains("blocks.1.attn.qkv.weight") && err.contains("[96, 48]"), "{err}");

    // A ViT's weights for ConvNeXt-T: refused by `samix convert`, naming the architecture.
    let o = common::samix_cli(
        &[
            "convert",
            "--from",
            "timm",
            "--to",
            "samix",
            "--arch",
            "convnext_tiny",
            "timm.safetensors",
            "out.safetensors",
        ],
        dir.path(),
    );
    assert!(!o.status.success());
    let said = String::from_utf8_lossy(&o.stderr);
    assert!(said.contains("timm.safetensors") && said.contains("stem.0.weight"), "{said}");
    assert!(!dir.path().join("out.safetensors").exists(), "nothing written on error");
}

/// `model.init_from` for a ViT: everything but the classifier (`head.*`) comes from the file;
/// the final norm (`norm.*`) is loaded, the classifier keeps its fresh initialisation.
#[test]
fn init_from_a_vit_starts_only_the_classifier_afresh() {
    let _lock = common::torch_rng_lock();
    let dir = tempfile::tempdir().unwrap();
    tch::manual_seed(1);
    let source = VarStore::new(Device::Cpu);
    Network::new(&source.root(), &small_vit(), 3, 1000).unwrap();
    let file = dir.path().join("vit.safetensors");
    interop::save(&file, source.variables().into_iter().collect()).unwrap();
    tch::manual_seed(2);
    let target = VarStore::new(Device::Cpu);
    Network::new(&target.root(), &small_vit(), 3, 10).unwrap();
    let before = target.variables()["head.weight"].copy();
    let n = interop::init_from(&target, "", Arch::DeitTiny.classifier_prefix(), &file).unwrap();
    let (src, dst) = (source.variables(), target.variables());
    assert_eq!(n, dst.len() - 2, "everything but head.weight and head.bias");
    assert!(dst["norm.weight"].equal(&src["norm.weight"]) && dst["pos_embed"].equal(&src["pos_embed"]));
    assert!(dst["head.weight"].equal(&before), "the classifier must start fresh");
}

/// The transformer keys are checked against each other and against the data, each error naming
/// its key: a ViT built for 224 px on 32-px CIFAR images, a window key on a ResNet, a Swin whose
/// stages do not tile into its windows, heads that do not divide the width.
#[test]
fn transformer_keys_are_checked_by_name() {
    let parse = |model: &str| {
        let text = format!("[data]\ndataset = \"cifar100\"\n[model]\n{model}\n[train]\nepochs = 1\nbatch_size = 8\n");
        samix::config::TrainConfig::parse(&text, &[]).err().map(|e| e.to_string()).unwrap_or_default()
    };
    let side = parse("arch = \"deit_small\"");
    assert!(side.contains("model.image_size") && side.contains("224") && side.contains("32 px"), "{side}");
    assert!(parse("arch = \"deit_small\"\nimage_size = 32\npatch_size = 4").is_empty(), "a 32-px ViT is fine");
    assert!(parse("arch = \"resnet18\"\nwindow = 7").contains("model.window"));
    let tiling = parse("arch = \"swin_tiny\"\nimage_size = 32\npatch_size = 2\nwindow = 5");
    assert!(tiling.contains("model.window"), "{tiling}");
    let heads = parse("arch = \"deit_tiny\"\nimage_size = 32\npatch_size = 4\nheads = 5");
    assert!(heads.contains("model.heads"), "{heads}");
}
