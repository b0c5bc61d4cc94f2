//! Run directories written by older samix versions: their `config.toml` keys moved to where they
//! live now, as they ran, before the usual strict reading. A user's own config gets no such help:
//! an old spelling there is an error naming the new key.
use toml::{Table, Value};

/// SAMix-SSL's keys that lived in `[ssl]` (written there for every self-supervised run).
const MOVED_FROM_SSL: [&str; 4] = ["mixer_loss", "eta", "mask_adjust", "mean_margin"];

/// Rewrites an older run's keys as they ran: see [`migrate_ssl`], [`migrate_warmup`].
pub(super) fn migrate(table: &mut Table) {
    migrate_warmup(table);
    migrate_ssl(table);
}

/// `[schedule] warmup_start_lr` (an absolute first rate, the ramp running to the annealed one)
/// became `warmup_ratio` (mmcv's: the ramp multiplies the annealed rate). Every run directory
/// wrote the key; without a warm-up it did nothing, and a start of 0 is a ratio of 0 (the same
/// rates in f32). A warm-up from another rate becomes the ratio of that rate to `optim.lr`, the
/// same first rate, with a warning that the ramp now differs.
fn migrate_warmup(table: &mut Table) {
    let number = |v: Option<&Value>| v.and_then(|v| v.as_float().or(v.as_integer().map(|i| i as f64)));
    let lr = number(table.get("optim").and_then(|o| o.get("lr"))).unwrap_or(0.1);
    let Some(Value::Table(schedule)) = table.get_mut("schedule") else { return };
    let Some(start) = number(schedule.get("warmup_start_lr")) else { return };
    schedule.remove("warmup_start_lr");
    if number(schedule.get("warmup_epochs")).is_some_and(|e| e > 0.0) {
        if start != 0.0 {
            tracing::warn!(
                "this run warmed up from schedule.warmup_start_lr = {start}; samix now warms up by schedule.warmup_ratio (mmcv's rule), read as {}",
                start / lr
            );
        }
        schedule.insert("warmup_ratio".into(), Value::Float((start / lr).clamp(0.0, 1.0)));
    }
}

/// Moves `[ssl]`'s SAMix keys into `[mix]` for samix/automix runs (where they applied) and drops
/// them elsewhere (where they were written but unused).
fn migrate_ssl(table: &mut Table) {
    let Some(Value::Table(ssl)) = table.get_mut("ssl") else { return };
    let old: Table = MOVED_FROM_SSL.iter().filter_map(|k| ssl.remove(*k).map(|v| (k.to_string(), v))).collect();
    let Some(Value::Table(mix)) = table.get_mut("mix") else { return };
    let online = matches!(mix.get("policy").and_then(Value::as_str), Some("samix" | "automix"));
    if old.is_empty() || !online {
        return;
    }
    // "probability" read [mix]'s own mask_adjust, which stays; "auto" replaces it.
    if old.get("mask_adjust").and_then(Value::as_str) == Some("auto") {
        mix.insert("mask_adjust".into(), Value::String("auto".into()));
    }
    if let Some(margin) = old.get("mean_margin") {
        mix.insert("mean_margin".into(), margin.clone());
    }
    if let Some(kind) = old.get("mixer_loss") {
        let mut loss = Table::new();
        loss.insert("kind".into(), kind.clone());
        if let (Some("local_global"), Some(eta)) = (kind.as_str(), old.get("eta")) {
            loss.insert("eta".into(), eta.clone());
        }
        mix.insert("mixer_loss".into(), Value::Table(loss));
    }
}
