//! Files samix writes: atomic replacement (write to a temporary name, sync, rename), JSON, PNG and
//! safetensors written that way. Every failure names the file; nothing is silently skipped.
use crate::{Error, Result};
use std::io::Write;
use std::path::Path;
use tch::Tensor;

/// Writes to `path.tmp`, syncs, then renames over `path`: readers see the old or the new file,
/// never half of one.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension(format!("{}.tmp", path.extension().and_then(|e| e.to_str()).unwrap_or("")));
    {
        let mut f = std::fs::File::create(&tmp).map_err(|e| Error::io(&tmp, e))?;
        f.write_all(bytes).map_err(|e| Error::io(&tmp, e))?;
        f.sync_all().map_err(|e| Error::io(&tmp, e))?;
    }
    std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))
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
