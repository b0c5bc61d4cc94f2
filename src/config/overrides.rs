//! Dotted `--set key.path=value` overrides of a run's TOML, and the blame for an error a `--set`
//! caused (the flag, not the file).
use crate::{Error, Result};

/// A key error caused by a `--set` names that `--set`, not the config file: the error is at the
/// key it set or inside it, or at a table above it and about the key it set (e.g. an unknown
/// field of that name).
pub(super) fn blame_override(e: Error, overrides: &[String]) -> Error {
    let Error::Config { key, msg } = e else { return e };
    let related = |set: &str| {
        // A size estimate names every key that sized it (`model.base_width, model.blocks`).
        let below = key.split(", ").any(|k| k == set || k.starts_with(&format!("{set}.")));
        // serde names the field an error is about first, in backticks ("unknown field `x`,
        // expected one of `a`, `b`").
        let named = msg.split('`').nth(1);
        let above = set.strip_prefix(&format!("{key}.")).is_some_and(|rest| rest.split('.').next() == named);
        below || above
    };
    match overrides.iter().find(|o| o.split_once('=').is_some_and(|(k, _)| related(k.trim()))) {
        Some(spec) => Error::Argument(format!("--set `{spec}`: key `{key}`: {msg}")),
        None => Error::Config { key, msg },
    }
}

/// Applies one `a.b.c=value` override; the value is read as TOML (number, bool, array, quoted
/// string), and as a plain string when it is none of those.
pub fn apply_override(table: &mut toml::Table, spec: &str) -> Result<()> {
    let (key, raw) =
        spec.split_once('=').ok_or_else(|| Error::Argument(format!("--set `{spec}`: expected key.path=value")))?;
    let key = key.trim();
    let parts: Vec<&str> = key.split('.').collect();
    if parts.iter().any(|p| p.is_empty()) {
        return Err(Error::Argument(format!("--set `{spec}`: empty key segment")));
    }
    let value = toml::from_str::<toml::Table>(&format!("v = {}", raw.trim()))
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(raw.trim().to_string()));
    let mut cur = table;
    for (i, part) in parts[..parts.len() - 1].iter().enumerate() {
        let entry = cur.entry(part.to_string()).or_insert_with(|| toml::Value::Table(toml::Table::new()));
        cur = entry.as_table_mut().ok_or_else(|| {
            let msg = format!("`{}` is a value, not a table; cannot set a key inside it", parts[..=i].join("."));
            Error::Argument(format!("--set `{spec}`: {msg}"))
        })?;
    }
    cur.insert(parts[parts.len() - 1].to_string(), value);
    Ok(())
}
