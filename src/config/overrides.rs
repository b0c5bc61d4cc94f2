//! Dotted `--set key.path=value` overrides of a run's TOML, and the blame for an error a `--set`
//! caused (the flag, not the file).
use crate::{Error, Result};

/// A key error caused by a `--set` names that `--set`, not the config file: the error is at the
/// key it set or inside it, at a table above it and about the key it set (e.g. an unknown field
/// of that name), or at a table above it that the file alone reads without this error (a check
/// of a whole table, `mix.ema`; a table the `--set` made, missing a field). `file_error`: the
/// error of the file without the `--set`s, if any (asked only when a `--set` is in question).
pub(super) fn blame_override(e: Error, overrides: &[String], file_error: impl FnOnce() -> Option<String>) -> Error {
    let Error::Config { key, msg } = e else { return e };
    let related = |set: &str| {
        // A size estimate names every key that sized it (`model.base_width, model.blocks`).
        let below = key.split(", ").any(|k| k == set || k.starts_with(&format!("{set}.")));
        // serde names the field an error is about first, in backticks ("unknown field `x`,
        // expected one of `a`, `b`").
        let named = msg.split('`').nth(1);
        let inside = set.strip_prefix(&format!("{key}."));
        let above = inside.is_some_and(|rest| rest.split('.').next() == named);
        (below || above, inside.is_some())
    };
    let key_of = |o: &String| o.split_once('=').map(|(k, _)| k.trim().to_string()).unwrap_or_default();
    let direct = overrides.iter().find(|o| related(&key_of(o)).0);
    let spec = direct.or_else(|| overrides.iter().find(|o| related(&key_of(o)).1)).cloned();
    let blame = match &spec {
        Some(_) if direct.is_some() => true,
        // A table-level error blames the `--set` inside it only when the file alone is free of it.
        Some(_) => file_error().as_deref() != Some(&Error::config(key.clone(), msg.clone()).to_string()),
        None => false,
    };
    match spec {
        Some(spec) if blame => Error::Argument(format!("--set `{spec}`: key `{key}`: {msg}")),
        _ => Error::Config { key, msg },
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
