//! A bad `--set` is blamed on that `--set`, in every table (issue 24 R12): before, errors inside
//! `[mix]`'s SAMix sub-tables named the config file and only `mix` (serde's tagged enum lost the
//! path), whole-table checks (`mix.ema`, `mix.mixer_loss`) named the file, and
//! `data.augment.image_size=0` blamed the file's `crop_padding`. An error the file makes on its
//! own is still the file's.
use samix::config::TrainConfig;

fn quickstart() -> String {
    std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/configs/quickstart.toml")).unwrap()
}

/// The error of the config `text` (an online SAMix run) with `sets`.
fn error(text: &str, sets: &[&str]) -> String {
    let sets: Vec<String> = sets.iter().map(|s| s.to_string()).collect();
    TrainConfig::parse(text, &sets).map(|_| ()).unwrap_err().to_string()
}

#[test]
fn a_bad_set_in_any_table_names_the_set_and_its_key() {
    let text = quickstart();
    let cases = [
        ("data.augment.image_size=0", "data.augment.image_size"),
        ("mix.mixer.lam_mul_k=x", "mix.mixer.lam_mul_k"),
        ("mix.mixer.upsample=foo", "mix.mixer.upsample"),
        ("mix.mixer.bogus=1", "mix.mixer.bogus"),
        ("mix.mask_loss.mode=foo", "mix.mask_loss.mode"),
        ("mix.mask_loss.weight=-1", "mix.mask_loss"),
        ("mix.mixer_loss.kind=foo", "mix.mixer_loss"),
        ("mix.mixer_loss.eta=x", "mix.mixer_loss"),
        ("mix.mixer_loss.kind=global", "mix.mixer_loss"),
        ("mix.ema.momentum=2", "mix.ema"),
        ("mix.ema.end_momentum=x", "mix.ema.end_momentum"),
        ("mix.mixer_optim.bogus=1", "mix.mixer_optim.bogus"),
        ("mix.mask_adjust=foo", "mix.mask_adjust"),
        ("mix.visual_every=x", "mix.visual_every"),
        ("mix.mixer=3", "mix.mixer"),
    ];
    for (set, key) in cases {
        let err = error(&text, &[set]);
        assert!(err.contains(&format!("--set `{set}`")) && err.contains(key), "--set {set}: {err}");
    }
    let err = error(&text, &["mix.alpha=x"]);
    assert!(err.contains("--set `mix.alpha=x`: key `mix.alpha`"), "{err}");
}

#[test]
fn an_error_of_the_file_itself_is_not_blamed_on_a_set_beside_it() {
    let text = format!("{}\n[mix.ema]\nmomentum = 2.0\n", quickstart());
    let err = error(&text, &["mix.ema.warmup_fraction=0.2"]);
    assert!(!err.contains("--set") && err.contains("mix.ema"), "{err}");
}
