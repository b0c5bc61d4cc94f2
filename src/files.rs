//! Files samix writes: atomic replacement (write to a temporary name, sync, rename), JSON, PNG and
//! safetensors written that way. Every failure names the file; nothing is silently skipped.
use crate::{Error, Result};
use std::io::Write;
use std::path::{Path, PathBuf};
use tch::Tensor;

/// Writes to `path.tmp`, syncs, then renames over `path`: readers see the old or the new file,
/// never half of one.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = tmp_path(path);
    {
        let mut f = std::fs::File::create(&tmp).map_err(|e| Error::io(&tmp, e))?;
        f.write_all(bytes).map_err(|e| Error::io(&tmp, e))?;
        f.sync_all().map_err(|e| Error::io(&tmp, e))?;
    }
    std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))
}

/// The temporary name a file is written under before it is renamed to `path`: `x.ext.tmp`, or
/// `x..tmp` for a name without an extension.
pub fn tmp_path(path: &Path) -> PathBuf {
    path.with_extension(format!("{}.tmp", path.extension().and_then(|e| e.to_str()).unwrap_or("")))
}

/// Whether `name` is a file name `is_name` accepts, or the temporary name ([`tmp_path`]) such a
/// file is written under.
pub fn is_or_tmp_of(name: &str, is_name: impl Fn(&str) -> bool) -> bool {
    is_name(name)
        || [name.strip_suffix("..tmp"), name.strip_suffix(".tmp")]
            .into_iter()
            .flatten()
            .any(|base| is_name(base) && tmp_path(Path::new(base)) == Path::new(name))
}

/// Removes, under `root`, what `written` says samix wrote there, judged by the names from `root`
/// down and whether the entry is a folder: such a file is removed, such a folder is cleared the
/// same way and removed once empty. Everything else stays — the user's files and folders, and
/// links of any kind (samix makes none) — and is returned, each at the top of what stayed.
pub fn remove_written(root: &Path, written: &dyn Fn(&[&str], bool) -> bool) -> Result<Vec<PathBuf>> {
    let mut kept = Vec::new();
    clear(root, &mut Vec::new(), written, &mut kept)?;
    Ok(kept)
}

/// [`remove_written`] in `dir`, whose names from the root are `rel`.
fn clear(
    dir: &Path,
    rel: &mut Vec<String>,
    written: &dyn Fn(&[&str], bool) -> bool,
    kept: &mut Vec<PathBuf>,
) -> Result<()> {
    let mut entries =
        std::fs::read_dir(dir).and_then(|it| it.collect::<std::io::Result<Vec<_>>>()).map_err(|e| Error::io(dir, e))?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let path = entry.path();
        // The entry itself, not what a link points at.
        let kind = entry.file_type().map_err(|e| Error::io(&path, e))?;
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
            kept.push(path);
            continue;
        };
        rel.push(name);
        let names: Vec<&str> = rel.iter().map(String::as_str).collect();
        let ours = (kind.is_file() || kind.is_dir()) && written(&names, kind.is_dir());
        if !ours {
            kept.push(path);
        } else if kind.is_dir() {
            let before = kept.len();
            clear(&path, rel, written, kept)?;
            if kept.len() == before {
                std::fs::remove_dir(&path).map_err(|e| Error::io(&path, e))?;
            }
        } else {
            std::fs::remove_file(&path).map_err(|e| Error::io(&path, e))?;
        }
        rel.pop();
    }
    Ok(())
}

/// `value` as pretty JSON, written atomically.
pub fn write_json_atomic<T: serde::Serialize>(path: &Path, value: &T) -> Result<()> {
    let json = serde_json::to_string_pretty(value).map_err(|e| Error::serialize(path, e))?;
    write_atomic(path, json.as_bytes())
}

/// An image as PNG, written atomically.
pub fn write_png_atomic(path: &Path, image: &image::RgbImage) -> Result<()> {
    let mut png = Vec::new();
    image
        .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
        .map_err(|e| Error::serialize(path, e))?;
    write_atomic(path, &png)
}

/// Named tensors in the default contiguous layout, sorted by name: safetensors stores plain
/// row-major data, and channels-last variables are strided differently.
pub fn contiguous(named: impl IntoIterator<Item = (String, Tensor)>) -> Vec<(String, Tensor)> {
    let mut out: Vec<(String, Tensor)> = named.into_iter().map(|(n, t)| (n, t.contiguous())).collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// Writes named tensors as safetensors under a temporary name, then renames it to `path`.
pub fn write_safetensors_atomic(path: &Path, named: impl IntoIterator<Item = (String, Tensor)>) -> Result<()> {
    let tmp = path.with_extension("safetensors.tmp");
    Tensor::write_safetensors(&contiguous(named), &tmp)?;
    std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))
}

/// Loads the variables of `vs` from a safetensors file, checking first that every variable is
/// there with the same shape and kind (torch's copy would broadcast a mismatch silently). Extra
/// tensors in the file are ignored. Nothing is copied unless every check passes.
pub fn load_checked(vs: &mut tch::nn::VarStore, path: &Path) -> Result<()> {
    let stored = Tensor::read_safetensors(path).map_err(|e| Error::data(path, format!("cannot read weights: {e}")))?;
    load_tensors_checked(vs, path, stored)
}

/// [`load_checked`] of tensors already read from `path` (which errors name).
pub fn load_tensors_checked(vs: &mut tch::nn::VarStore, path: &Path, stored: Vec<(String, Tensor)>) -> Result<()> {
    let stored: std::collections::HashMap<String, Tensor> = stored.into_iter().collect();
    let vars = vs.variables();
    let mut names: Vec<&String> = vars.keys().collect();
    names.sort();
    for name in &names {
        let var = &vars[*name];
        let t = stored.get(*name).ok_or_else(|| Error::data(path, format!("no `{name}` in the file")))?;
        if t.size() != var.size() || t.kind() != var.kind() {
            let msg = format!(
                "`{name}` is {:?} {:?} in the file, {:?} {:?} here",
                t.kind(),
                t.size(),
                var.kind(),
                var.size()
            );
            return Err(Error::data(path, msg));
        }
    }
    tch::no_grad(|| {
        for name in names {
            let mut var = vars[name].shallow_clone();
            var.copy_(&stored[name].to_device(var.device()));
        }
    });
    Ok(())
}
