//! Every SAMix key of a run lives in `[mix]` and is resolved once for its scenario: the run
//! directory states the area rule that ran, SAMix-SSL's η is checked, a user's old `[ssl]`
//! spelling is refused with the new key while an old run directory's `config.toml` still loads
//! (its keys moved as they ran), and `policy = "none"` ignores another policy's keys.
use samix::config::TrainConfig;
use samix::samix::{ContrastiveLoss, Scenario};
use std::path::PathBuf;

fn preset(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("configs").join(name)
}

fn preset_text(name: &str) -> String {
    std::fs::read_to_string(preset(name)).unwrap()
}

/// The SAMix-SSL preset as samix wrote it into run directories before its keys moved: the area
/// rule, margin and Mixer loss in `[ssl]`, and `[mix] mask_adjust = 0.0` (which "auto" ignored).
fn old_ssl_run_config() -> String {
    let text = preset_text("cifar100_r18_moco_samix.toml");
    let moved = "mask_adjust = \"auto\"\nmean_margin = 0.1\n";
    let loss = "[mix.mixer_loss]\nkind = \"local_global\"\neta = 0.5\n\n";
    assert!(text.contains(moved) && text.contains(loss), "the preset changed; update this test");
    let old_ssl = "[ssl]\nmixer_loss = \"local_global\"\neta = 0.3\nmask_adjust = \"auto\"\nmean_margin = 0.2\n";
    text.replace(moved, "mask_adjust = 0.0\n").replace(loss, "").replace("[ssl]\n", old_ssl)
}

#[test]
fn an_old_run_directory_loads_with_its_ssl_keys_moved_as_they_ran() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.toml");
    std::fs::write(&path, old_ssl_run_config()).unwrap();
    let err = TrainConfig::load(&path, &[]).unwrap_err().to_string();
    assert!(err.contains("ssl.") && err.contains("has moved to [mix]"), "{err}");
    let cfg = TrainConfig::load_stored(&path, &[]).unwrap();
    let o = cfg.mix.online_mixer(Scenario::SelfSupervised).unwrap();
    assert_eq!(o.area_margin, Some(0.2), "auto, with the stored margin");
    assert_eq!(o.mask_adjust, 0.0);
    assert_eq!(o.contrastive_loss, ContrastiveLoss::LocalGlobal { eta: 0.3 });
    assert!(cfg.to_toml().unwrap().contains("mask_adjust = \"auto\""));
    // A self-supervised run with an input policy had the four keys written but unused.
    let mixup = "[data]\ndataset = \"cifar100\"\n[data.augment]\nimage_size = 32\n[model]\narch = \"resnet18\"\n\
                 [train]\nepochs = 1\n[ssl]\nmixer_loss = \"local_global\"\neta = 0.5\nmask_adjust = \"auto\"\n\
                 mean_margin = 0.1\n[mix]\npolicy = \"mixup\"\nalpha = 1.0\n";
    std::fs::write(&path, mixup).unwrap();
    let cfg = TrainConfig::load_stored(&path, &[]).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(cfg.mix.name(), "mixup");
}

#[test]
fn a_run_directory_states_the_area_rule_that_ran() {
    let supervised = TrainConfig::load(&preset("quickstart.toml"), &[]).unwrap().to_toml().unwrap();
    assert!(supervised.contains("mask_adjust = 0.0"), "{supervised}");
    let text = preset_text("cifar100_r18_moco_samix.toml").replace("mask_adjust = \"auto\"\n", "");
    let ssl = TrainConfig::parse(&text, &[]).unwrap();
    assert!(ssl.to_toml().unwrap().contains("mask_adjust = \"auto\""), "the SSL default is written");
    let o = ssl.mix.online_mixer(Scenario::SelfSupervised).unwrap();
    assert_eq!(o.area_margin, Some(0.1));
}

#[test]
fn samix_ssl_loss_weight_is_checked_and_the_loss_has_its_scenario() {
    let text = preset_text("cifar100_r18_moco_samix.toml");
    let set = |s: &[&str]| s.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    for (sets, needle) in [
        (set(&["mix.mixer_loss.eta=-1"]), "mix.mixer_loss.eta"),
        (set(&["mix.mixer_loss.eta=nan"]), "mix.mixer_loss.eta"),
        (set(&["mix.mixer_loss.kind=\"soft_ce\""]), "--set `mix.mixer_loss.kind"),
        (set(&["mix.mean_margin=1.5"]), "mix.mean_margin"),
        (set(&["mix.mask_adjust=1.5"]), "mix.mask_adjust"),
    ] {
        let err = TrainConfig::parse(&text, &sets).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.contains(needle), "{sets:?}: {err:?}");
    }
    // local_global without eta takes η = 0.5, as [ssl] eta did.
    let cfg = TrainConfig::parse(&text.replace("eta = 0.5\n", ""), &[]).unwrap();
    let o = cfg.mix.online_mixer(Scenario::SelfSupervised).unwrap();
    assert_eq!(o.contrastive_loss, ContrastiveLoss::LocalGlobal { eta: 0.5 });
    let supervised = preset_text("cifar100_r18_samix.toml");
    let err = TrainConfig::parse(&supervised, &set(&["mix.mixer_loss.kind=\"global\""])).unwrap_err().to_string();
    assert!(err.contains("mix.mixer_loss.kind"), "{err}");
}

#[test]
fn policy_none_ignores_another_policys_keys() {
    let text = preset_text("quickstart_mixup.toml");
    let cfg = TrainConfig::parse(&text, &["mix.policy=none".to_string()]).unwrap();
    assert_eq!(cfg.mix.name(), "none");
}
