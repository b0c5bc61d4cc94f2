//! The transformer case (issue 26): one online-SAMix step on a tiny DeiT-shaped ViT (4 blocks of
//! width 24, 2 heads, 4-px patches on 32-px images; the Mixer on block 3's 8×8 token map, ×4
//! nearest) under AdamW with the paramwise decay rule, against the same oracle with its ViT and
//! AdamW (tests/oracle/vit_oracle.py, step_optim.py): every loss, both masks, every weight after
//! the step; and a broken detail caught.
use super::draws;
use super::harness::{compare, disagreeing, samix_step, work_dir};
use samix::config::TrainConfig;

fn tiny_vit_samix() -> TrainConfig {
    let text = r#"
seed = 0
[data]
dataset = "cifar100"
[model]
arch = "deit_tiny"
base_width = 24
depth = 4
heads = 2
patch_size = 4
image_size = 32
[optim]
kind = "adamw"
lr = 1e-3
weight_decay = 0.05
no_decay_1d = true
no_decay_names = ["cls_token", "pos_embed"]
[schedule]
min_lr = 1e-4
[mix]
policy = "samix"
mask_stage = 2
mask_adjust = 0.5
[mix.mixer]
variant = "samix"
lam_mul_k = 0.25
upsample = "nearest"
value_dropout = 0.0
[mix.mask_loss]
mode = "l1_variance"
margin = 0.1
weight = 0.1
[mix.mixer_loss]
kind = "pair_local_global"
eta = 0.5
[mix.mixer_optim]
lr = 2e-3
[train]
epochs = 2
batch_size = 8
label_smoothing = 0.1
"#;
    TrainConfig::parse(text, &[]).unwrap()
}

#[test]
fn samix_step_on_a_vit_matches_the_pytorch_oracle() {
    let dir = work_dir("vit");
    samix_step(&tiny_vit_samix(), draws(0.71, 0.28, true), dir.path());
    let (excess, n) = compare(dir.path(), None);
    assert!(n > 100, "only {n} quantities compared");
    let bad = disagreeing(&excess);
    assert!(bad.is_empty(), "samix and the PyTorch oracle disagree on {bad:?}");
    for (detail, must_differ) in [("mask_not_detached", "after.mixer."), ("ema_not_frozen", "after.k.")] {
        let (excess, _) = compare(dir.path(), Some(detail));
        let bad = disagreeing(&excess);
        assert!(
            bad.iter().any(|b| b.starts_with(must_differ)),
            "breaking `{detail}` in the oracle went unnoticed on {must_differ}* (differences: {bad:?})"
        );
    }
}
