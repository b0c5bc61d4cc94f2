//! Files samix writes: atomic replacement (write to a temporary name, sync, rename; the temporary
//! file removed again when any step fails), JSON, PNG and safetensors written that way; and
//! safetensors read only after their header is validated ([`read_safetensors`]). Every failure
//! names the file; nothing is silently skipped.
use crate::{Error, Result};
use std::io::Write;
use std::path::{Path, PathBuf};
use tch::Tensor;

/// Writes to `path.tmp`, syncs, then renames over `path`: readers see the old or the new file,
/// never half of one.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = tmp_path(path);
    removing_on_error(&tmp, || {
        let mut f = std::fs::File::create(&tmp).map_err(|e| Error::io(&tmp, e))?;
        f.write_all(bytes).map_err(|e| Error::io(&tmp, e))?;
        f.sync_all().map_err(|e| Error::io(&tmp, e))?;
        drop(f);
        std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))
    })
}

/// Runs `write`, which writes `tmp` and renames it into place; when it fails, `tmp` is removed
/// (a failed write once left a 46 MB `.tmp` beside the output, issue 24 R11).
fn removing_on_error(tmp: &Path, write: impl FnOnce() -> Result<()>) -> Result<()> {
    let result = write();
    if result.is_err() && tmp.is_file() {
        let _ = std::fs::remove_file(tmp);
    }
    result
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
    removing_on_error(&tmp, || {
        Tensor::write_safetensors(&contiguous(named), &tmp).map_err(|e| safetensors_error(&tmp, "cannot write", e))?;
        std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))
    })
}

/// Loads the variables of `vs` from a safetensors file, checking first that every variable is
/// there with the same shape and kind (torch's copy would broadcast a mismatch silently). Extra
/// tensors in the file are ignored. Nothing is copied unless every check passes.
pub fn load_checked(vs: &mut tch::nn::VarStore, path: &Path) -> Result<()> {
    load_tensors_checked(vs, path, read_safetensors(path, "weights")?)
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

/// The tensors of a safetensors file, read only after its header is validated: every tensor's
/// dtype is one libtorch has, each dimension fits libtorch's 64-bit signed sizes, the element
/// count times the dtype's size is the tensor's byte range without overflow, and the ranges lie
/// within the file. libtorch was handed a dimension ≥ 2⁶³ of an empty tensor and answered with
/// a 25-line C++ trace (issue 24 R4). `what` names the content (`weights`) in the errors, which
/// name the file and the tensor.
pub fn read_safetensors(path: &Path, what: &str) -> Result<Vec<(String, Tensor)>> {
    check_safetensors_header(path).map_err(|msg| Error::data(path, format!("not a valid {what} file: {msg}")))?;
    Tensor::read_safetensors(path).map_err(|e| safetensors_error(path, &format!("cannot read {what}"), e))
}

/// A safetensors error of tch as one line naming the file: an I/O error (a full disk) as the
/// OS's message, not the safetensors crate's `Display`, which prints its `Debug` form
/// (`IoError(Os { code: 28, kind: StorageFull, .. })`, issue 24 R13).
pub(crate) fn safetensors_error(path: &Path, doing: &str, e: tch::TchError) -> Error {
    match e {
        tch::TchError::SafeTensorError { err: safetensors::SafeTensorError::IoError(io), .. } => Error::io(path, io),
        tch::TchError::SafeTensorError { err, .. } => {
            Error::data(path, format!("{doing}: {}", safetensors_message(&err)))
        }
        e => Error::data(path, format!("{doing}: {e}")),
    }
}

/// The variant's name and fields without Rust's `Debug` punctuation (`InvalidOffset("x")` →
/// `InvalidOffset x`): the crate gives no other text.
fn safetensors_message(err: &safetensors::SafeTensorError) -> String {
    format!("{err:?}").replace(['(', ')', '"', '{', '}'], " ").split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The bytes of one element of a safetensors dtype that libtorch can hold.
fn dtype_size(dtype: &str) -> Option<u64> {
    match dtype {
        "F64" | "I64" => Some(8),
        "F32" | "I32" => Some(4),
        "F16" | "BF16" | "I16" => Some(2),
        "I8" | "U8" | "BOOL" => Some(1),
        _ => None,
    }
}

/// [`read_safetensors`]'s checks, reading only the header (8 bytes of length, then JSON).
fn check_safetensors_header(path: &Path) -> std::result::Result<(), String> {
    use std::io::Read;
    let mut f = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let file_len = f.metadata().map_err(|e| e.to_string())?.len();
    let mut len = [0u8; 8];
    f.read_exact(&mut len).map_err(|_| format!("{file_len} bytes, shorter than a header"))?;
    let header_len = u64::from_le_bytes(len);
    let data_len = file_len
        .checked_sub(8)
        .and_then(|rest| rest.checked_sub(header_len))
        .ok_or_else(|| format!("the header claims {header_len} bytes, more than the file holds"))?;
    let mut header = Vec::new();
    f.take(header_len).read_to_end(&mut header).map_err(|e| e.to_string())?;
    let header: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(&header).map_err(|e| format!("header is not a JSON object: {e}"))?;
    for (name, info) in header.iter().filter(|(n, _)| *n != "__metadata__") {
        check_tensor_entry(info, data_len).map_err(|msg| format!("tensor `{name}`: {msg}"))?;
    }
    Ok(())
}

/// One header entry (`{"dtype", "shape", "data_offsets"}`) against `data_len` bytes of data.
fn check_tensor_entry(info: &serde_json::Value, data_len: u64) -> std::result::Result<(), String> {
    let dtype = info.get("dtype").and_then(|d| d.as_str()).ok_or("no dtype")?;
    let size = dtype_size(dtype).ok_or_else(|| format!("dtype {dtype} is not one samix reads"))?;
    let numbers = |key: &str| -> std::result::Result<Vec<u64>, String> {
        let list = info.get(key).and_then(|v| v.as_array()).ok_or_else(|| format!("no {key} list"))?;
        list.iter().map(|v| v.as_u64().ok_or_else(|| format!("{key} holds {v}, not a size below 2^64"))).collect()
    };
    let shape = numbers("shape")?;
    if let Some(d) = shape.iter().find(|&&d| d > i64::MAX as u64) {
        return Err(format!("dimension {d} of shape {shape:?} is beyond the largest size a tensor can have, 2^63 - 1"));
    }
    let bytes = shape
        .iter()
        .try_fold(1u64, |n, &d| n.checked_mul(d))
        .and_then(|n| n.checked_mul(size))
        .ok_or_else(|| format!("shape {shape:?} of {dtype} overflows 64 bits of bytes"))?;
    let [begin, end] = numbers("data_offsets")?[..] else { return Err("data_offsets is not [begin, end]".into()) };
    if begin > end || end > data_len {
        return Err(format!("data_offsets [{begin}, {end}] are not within the file's {data_len} bytes of data"));
    }
    if end - begin != bytes {
        let msg = format!("shape {shape:?} of {dtype} is {bytes} bytes, its data_offsets hold {}", end - begin);
        return Err(msg);
    }
    Ok(())
}
