//! Online SAMix, SAMix-P and SAMix-SSL run unchanged on a transformer (issue 26): a tiny ViT
//! (3 blocks of width 24, 4-px patches on Fashion-MNIST's 28-px images: a 7×7 token grid, the
//! Mixer on block 2's map ×4) trains with online SAMix and leaves a Mixer artifact that SAMix-P
//! loads and mixes with; MoCo v2 + SAMix pre-trains it and exports its backbone.
mod common;
use common::*;
use samix::config::TrainConfig;
use samix::samix::PretrainedMixer;
use tch::{Device, Tensor};

const VIT: &str = "arch = \"deit_tiny\"\nbase_width = 24\ndepth = 3\nheads = 2\npatch_size = 4\nimage_size = 28";

/// A tiny test config's run with its narrow ResNet-18 swapped for the tiny ViT.
fn on_vit(text: String) -> TrainConfig {
    let resnet = "arch = \"resnet18\"\nbase_width = 8\nblocks = [1, 1, 1, 1]";
    assert!(text.contains(resnet));
    TrainConfig::parse(&text.replace(resnet, VIT), &[]).unwrap()
}

/// `tiny_fashion_config`'s run on the tiny ViT.
fn vit_config(train: usize, mix: &str) -> TrainConfig {
    on_vit(tiny_fashion_config(train, 100, 1, mix))
}

#[test]
fn samix_then_samix_p_on_a_vit() {
    let _lock = torch_rng_lock();
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("samix");
    let summary =
        train_run(&vit_config(300, "policy = \"samix\"\nmask_stage = 1\nvisual_every = 0"), &run, false, false, None)
            .unwrap();
    assert!(summary.final_acc1.is_finite());
    let pretrained = PretrainedMixer::load(&run, Device::Cpu).unwrap();
    let artifact = pretrained.artifact().unwrap();
    assert_eq!((artifact.in_channels, artifact.image_size, artifact.mask_stage), (1, 28, 1));
    // The frozen encoder's map is the 7×7 token grid, 24 wide.
    let x = Tensor::randn([2, 1, 28, 28], (tch::Kind::Float, Device::Cpu));
    assert_eq!(pretrained.features(&x).size(), [2, 24, 7, 7]);

    let mix = format!("policy = \"samix_p\"\nmixer = \"{}\"", run.display());
    let summary = train_run(&vit_config(200, &mix), &tmp.path().join("samix_p"), false, false, None).unwrap();
    assert!(summary.final_acc1.is_finite());
}

#[test]
fn samix_ssl_pretrains_a_vit() {
    let _lock = torch_rng_lock();
    let tmp = tempfile::tempdir().unwrap();
    let cfg = on_vit(tiny_pretrain_text(1, "policy = \"samix\"\nmask_stage = 1\nlam_margin = 0.0"));
    let run = tmp.path().join("ssl");
    train_run(&cfg, &run, false, false, None).unwrap();
    let metrics = std::fs::read_to_string(run.join("metrics.jsonl")).unwrap();
    assert!(metrics.contains("knn_acc1") && metrics.contains("loss_mix"), "{metrics}");
    let backbone: Vec<String> =
        Tensor::read_safetensors(run.join("backbone.safetensors")).unwrap().into_iter().map(|(n, _)| n).collect();
    assert!(backbone.iter().any(|n| n == "patch_embed.proj.weight"), "{backbone:?}");
    assert!(!backbone.iter().any(|n| n.starts_with("neck.") || n.starts_with("mixer.")), "{backbone:?}");
}
