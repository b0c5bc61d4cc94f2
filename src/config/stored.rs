//! Run directories written by older samix versions: their `config.toml` keys moved to where they
//! live now, as they ran, before the usual strict reading. A user's own config gets no such help:
//! an old spelling there is an error naming the new key.
use toml::{Table, Value};

/// SAMix-SSL's keys that lived in `[ssl]` (written there for every self-supervised run).
const MOVED_FROM_SSL: [&str; 4] = ["mixer_loss", "eta", "mask_adjust", "mean_margin"];

/// Moves `[ssl]`'s SAMix keys into `[mix]` for samix/automix runs (where they applied) and drops
/// them elsewhere (where they were written but unused).
pub(super) fn migrate(table: &mut Table) {
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
