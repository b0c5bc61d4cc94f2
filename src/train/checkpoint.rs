//! Checkpoints: `checkpoints/epoch-NNNN/` holds `model.safetensors` (weights and BN buffers),
//! `optimizer.safetensors` (momentum buffers), `state.json` and the resolved `config.toml`, so a
//! checkpoint folder is usable on its own (`samix eval`). A folder is written under a temporary
//! name and renamed; `checkpoints/latest` then names it (also replaced atomically), so a crash
//! never leaves a half checkpoint in use, nor a whole one unused (see [`save`], [`latest`]).
//! Every read of a checkpoint's tensors checks the SHA-256 its `state.json` recorded, and every
//! read of `state.json` its own (see [`super::state_file`]).
pub use super::state_file::{read_state, write_state, CheckpointState, PartialEpoch};
use crate::files::{contiguous, write_atomic};
use crate::{Error, Result};
use std::path::{Path, PathBuf};
use tch::{nn::VarStore, Tensor};

/// A checkpoint folder's name: `epoch-NNNN`, or `epoch-NNNN.step-NNNNNN` mid-epoch.
pub fn folder_name(state: &CheckpointState) -> String {
    match &state.partial {
        None => format!("epoch-{:04}", state.epoch),
        Some(p) => format!("epoch-{:04}.step-{:06}", state.epoch, p.steps),
    }
}

/// Where a checkpoint folder [`folder_name`] wrote stands in the run: (epochs completed, steps of
/// the next epoch); a later checkpoint has a larger key. `None` for any other name.
fn folder_key(name: &str) -> Option<(u64, u64)> {
    let number = |s: &str| if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) { s.parse().ok() } else { None };
    let rest = name.strip_prefix("epoch-")?;
    match rest.split_once(".step-") {
        Some((epoch, step)) => Some((number(epoch)?, number(step)?)),
        None => Some((number(rest)?, 0)),
    }
}

pub struct Checkpoint {
    pub dir: PathBuf,
    pub state: CheckpointState,
}

pub const MODEL_FILE: &str = "model.safetensors";
pub const OPTIMIZER_FILE: &str = "optimizer.safetensors";
pub const STATE_FILE: &str = "state.json";
pub const CONFIG_FILE: &str = "config.toml";
/// The file in `checkpoints/` naming the latest checkpoint folder.
const LATEST: &str = "latest";
/// Beside `checkpoints/`: where a run's first checkpoint is put together with its `latest`,
/// before it becomes `checkpoints/` in one rename.
pub const FIRST_STAGING: &str = "checkpoints.tmp";

/// Writes a checkpoint of `vs` and the optimiser's state into `run_dir/checkpoints/` and makes it
/// the latest. It counts from the moment its folder appears there under its final name, and from
/// then on [`latest`] finds it, wherever the process is stopped: the folder is written under a
/// temporary name and renamed into place, then `latest` names it; the first checkpoint of a run
/// appears with its `latest` in one rename (`checkpoints.tmp` → `checkpoints`, since a run with
/// `checkpoints/` but no `latest` is not resumed); a later folder not yet named by `latest` is
/// found by its name. Older checkpoints are removed last.
pub fn save(
    run_dir: &Path,
    vs: &VarStore,
    optimizer_state: &[(String, Tensor)],
    state: &CheckpointState,
    config_toml: &str,
) -> Result<PathBuf> {
    let root = run_dir.join("checkpoints");
    let name = folder_name(state);
    let final_dir = root.join(&name);
    // A `checkpoints/` already there (with `latest`, or holding files of the user's that
    // `--force` kept) gets the folder beside what it holds; only a first checkpoint of a run
    // without one appears with its `latest` in one rename.
    if root.exists() {
        let tmp = root.join(format!("{name}.tmp"));
        write_folder(&tmp, vs, optimizer_state, state, config_toml).inspect_err(|_| {
            let _ = remove_folder(&tmp);
        })?;
        remove_folder(&final_dir)?;
        std::fs::rename(&tmp, &final_dir).map_err(|e| Error::io(&final_dir, e))?;
        exit_point("checkpoint-visible", &name);
        write_atomic(&root.join(LATEST), name.as_bytes())?;
    } else {
        // A failed write (a full disk) leaves no staging folder behind: it holds only what was
        // just written here (issue 24 R13).
        let staging = run_dir.join(FIRST_STAGING);
        remove_dir_if_there(&staging)?;
        write_folder(&staging.join(&name), vs, optimizer_state, state, config_toml)
            .and_then(|()| write_atomic(&staging.join(LATEST), name.as_bytes()))
            .and_then(|()| std::fs::rename(&staging, &root).map_err(|e| Error::io(&root, e)))
            .inspect_err(|_| {
                let _ = remove_dir_if_there(&staging);
            })?;
        exit_point("checkpoint-visible", &name);
    }
    // Older checkpoints are removed only once `latest` names the new one.
    for entry in std::fs::read_dir(&root).map_err(|e| Error::io(&root, e))?.flatten() {
        let n = entry.file_name().to_string_lossy().into_owned();
        if is_written_folder(&n) && n != name && entry.file_type().is_ok_and(|t| t.is_dir()) {
            let _ = remove_folder(&entry.path());
        }
    }
    Ok(final_dir)
}

/// Writes a complete checkpoint folder at `dir` (replacing one there): the tensor files, synced
/// to disk, then `state.json` with their SHA-256, then `config.toml`.
fn write_folder(
    dir: &Path,
    vs: &VarStore,
    optimizer_state: &[(String, Tensor)],
    state: &CheckpointState,
    config_toml: &str,
) -> Result<()> {
    remove_folder(dir)?;
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let mut state = state.clone();
    let optimizer = optimizer_state.iter().map(|(n, t)| (n.clone(), t.shallow_clone()));
    let mut files = vec![(MODEL_FILE, contiguous(vs.variables()))];
    if !optimizer_state.is_empty() {
        files.push((OPTIMIZER_FILE, contiguous(optimizer)));
    }
    for (file, tensors) in &files {
        let path = dir.join(file);
        Tensor::write_safetensors(tensors, &path)
            .map_err(|e| crate::files::safetensors_error(&path, "cannot write", e))?;
        std::fs::File::open(&path).and_then(|f| f.sync_all()).map_err(|e| Error::io(&path, e))?;
        state.files.insert(file.to_string(), sha256_file(&path)?);
    }
    fail_point(dir)?;
    write_state(&dir.join(STATE_FILE), &state)?;
    write_atomic(&dir.join(CONFIG_FILE), config_toml.as_bytes())
}

fn remove_dir_if_there(dir: &Path) -> Result<()> {
    if dir.exists() {
        std::fs::remove_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    }
    Ok(())
}

/// Whether `name` is a checkpoint folder or the temporary folder one is written in.
fn is_written_folder(name: &str) -> bool {
    folder_key(name.strip_suffix(".tmp").unwrap_or(name)).is_some()
}

/// Whether `name` is a file [`save`] writes into a checkpoint folder (or its temporary name).
fn is_written_file(name: &str) -> bool {
    crate::files::is_or_tmp_of(name, |n| [MODEL_FILE, OPTIMIZER_FILE, STATE_FILE, CONFIG_FILE].contains(&n))
}

/// Whether samix writes the entry at `rel` (names from `checkpoints/` down, empty for that folder
/// itself; `dir`: a folder there): `latest`, checkpoint folders and the files in them.
pub(crate) fn is_written(rel: &[&str], dir: bool) -> bool {
    match (rel, dir) {
        ([], true) => true,
        ([name], false) => crate::files::is_or_tmp_of(name, |n| n == LATEST),
        ([folder], true) => is_written_folder(folder),
        ([folder, file], false) => is_written_folder(folder) && is_written_file(file),
        _ => false,
    }
}

/// What the checkpoint folders of a run hold that samix did not write (a run writes such a folder
/// anew, so they would be in its way).
pub(crate) fn foreign_entries(run_dir: &Path) -> Result<Vec<PathBuf>> {
    let root = run_dir.join("checkpoints");
    if !std::fs::symlink_metadata(&root).is_ok_and(|m| m.is_dir()) {
        return Ok(Vec::new());
    }
    let mut foreign = Vec::new();
    for entry in std::fs::read_dir(&root).map_err(|e| Error::io(&root, e))? {
        let entry = entry.map_err(|e| Error::io(&root, e))?;
        let is_dir = entry.file_type().map_err(|e| Error::io(entry.path(), e))?.is_dir();
        if !is_dir || !entry.file_name().to_str().is_some_and(is_written_folder) {
            continue;
        }
        for file in std::fs::read_dir(entry.path()).map_err(|e| Error::io(entry.path(), e))? {
            let file = file.map_err(|e| Error::io(entry.path(), e))?;
            let ours =
                file.file_type().is_ok_and(|t| t.is_file()) && file.file_name().to_str().is_some_and(is_written_file);
            if !ours {
                foreign.push(file.path());
            }
        }
    }
    foreign.sort();
    Ok(foreign)
}

/// Removes a checkpoint folder samix wrote — its files, then the folder — if there is one at
/// `dir`; refuses, naming them, where it holds anything else or `dir` is not a folder.
fn remove_folder(dir: &Path) -> Result<()> {
    match std::fs::symlink_metadata(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::io(dir, e)),
        Ok(m) if !m.is_dir() => {
            return Err(Error::run(
                dir,
                "is in the way of a checkpoint: a file or link samix did not write; move it away",
            ))
        }
        Ok(_) => {}
    }
    let kept = crate::files::remove_written(dir, &|rel, is_dir| !is_dir && matches!(rel, [f] if is_written_file(f)))?;
    if !kept.is_empty() {
        let names: Vec<String> = kept.iter().map(|p| p.display().to_string()).collect();
        let msg = format!(
            "holds files samix did not write ({}); move them out to let samix write this checkpoint",
            names.join(", ")
        );
        return Err(Error::run(dir, msg));
    }
    std::fs::remove_dir(dir).map_err(|e| Error::io(dir, e))
}

/// Set to `POINT:FOLDER` (`checkpoint-visible:epoch-0001`), the process exits at once with code
/// 137 (as if killed) at that point of writing that checkpoint: the on-disk state a kill there
/// leaves, for the tests of what a resume makes of it. `checkpoint-visible`: the folder has just
/// appeared under its final name.
pub const EXIT_POINT_VAR: &str = "SAMIX_TEST_EXIT_AT";

/// With [`EXIT_POINT_VAR`] set to `checkpoint-disk-full:FOLDER`, writing that checkpoint fails
/// after its tensor files, as on a full disk (ENOSPC), naming its `state.json` (a test hook).
fn fail_point(dir: &Path) -> Result<()> {
    let name = dir.file_name().and_then(|n| n.to_str()).unwrap_or("");
    let name = name.strip_suffix(".tmp").unwrap_or(name);
    if std::env::var(EXIT_POINT_VAR).is_ok_and(|v| v.split_once(':') == Some(("checkpoint-disk-full", name))) {
        return Err(Error::io(dir.join(STATE_FILE), std::io::Error::from_raw_os_error(28)));
    }
    Ok(())
}

/// The process exits here when [`EXIT_POINT_VAR`] names this point and checkpoint (a test hook).
fn exit_point(point: &str, name: &str) {
    if std::env::var(EXIT_POINT_VAR).is_ok_and(|v| v.split_once(':') == Some((point, name))) {
        tracing::warn!("{EXIT_POINT_VAR}: exiting at {point} of {name}");
        std::process::exit(137);
    }
}

/// The run's latest checkpoint, if it has one: the folder `checkpoints/latest` names, unless a
/// later complete one is there — renamed into place by a writer stopped before it could update
/// `latest` — which is used instead when every checksum its `state.json` records matches (and
/// skipped, with a warning, when one does not). Without `latest`, the latest complete folder.
pub fn latest(run_dir: &Path) -> Result<Option<Checkpoint>> {
    let root = run_dir.join("checkpoints");
    let named = latest_pointer(&root)?;
    let floor = named.as_ref().map(|(_, key)| *key);
    for (key, name) in folders_newest_first(&root)? {
        if floor.is_some_and(|f| key <= f) {
            break;
        }
        let dir = root.join(&name);
        match open(&dir).and_then(|c| c.verify_all().map(|()| c)) {
            Ok(c) => {
                let pointer = named.as_ref().map_or("is missing".to_string(), |(n, _)| format!("names `{n}`"));
                tracing::warn!(
                    "using {}, the latest whole checkpoint (checkpoints/latest {pointer}: the writer stopped before updating it)",
                    dir.display()
                );
                return Ok(Some(c));
            }
            Err(e) => tracing::warn!("{}: not used, not a whole checkpoint: {e}", dir.display()),
        }
    }
    named.map(|(name, _)| open(&root.join(name))).transpose()
}

/// The folder name `checkpoints/latest` holds and its key, if there is a `latest`; an error
/// when it names anything but a checkpoint folder of this run.
fn latest_pointer(root: &Path) -> Result<Option<(String, (u64, u64))>> {
    let pointer = root.join(LATEST);
    if !pointer.exists() {
        return Ok(None);
    }
    let name = std::fs::read_to_string(&pointer).map_err(|e| Error::io(&pointer, e))?;
    let name = name.trim();
    let key = folder_key(name).ok_or_else(|| {
        Error::data(
            &pointer,
            format!("names `{name}`, not a checkpoint of this run (epoch-NNNN or epoch-NNNN.step-NNNNNN)"),
        )
    })?;
    Ok(Some((name.to_string(), key)))
}

/// The checkpoint folders in `root` (named as [`folder_name`] names them, with a `state.json`),
/// latest first, with their keys.
fn folders_newest_first(root: &Path) -> Result<Vec<((u64, u64), String)>> {
    if !root.is_dir() {
        return Ok(Vec::new());
    }
    let mut found: Vec<((u64, u64), String)> = std::fs::read_dir(root)
        .map_err(|e| Error::io(root, e))?
        .flatten()
        .filter_map(|entry| {
            let name = entry.file_name().to_str()?.to_string();
            let key = folder_key(&name)?;
            entry.path().join(STATE_FILE).is_file().then_some((key, name))
        })
        .collect();
    found.sort_by(|a, b| b.cmp(a));
    Ok(found)
}

/// Opens a checkpoint folder (or a run folder, meaning its latest checkpoint).
pub fn open(dir: &Path) -> Result<Checkpoint> {
    if !dir.join(STATE_FILE).is_file() {
        if dir.join("checkpoints").is_dir() {
            return latest(dir)?.ok_or_else(|| Error::run(dir, "run has no checkpoint yet"));
        }
        return Err(Error::run(dir, format!("not a checkpoint folder (no {STATE_FILE})")));
    }
    let state = read_state(&dir.join(STATE_FILE))?;
    Ok(Checkpoint { dir: dir.to_path_buf(), state })
}

/// The checkpoint folder a file belongs to, when `path` is the weights file of one (its
/// `model.safetensors`, beside a `state.json`): such a file is read as its checkpoint.
pub fn folder_of_model_file(path: &Path) -> Option<&Path> {
    let dir = path.parent()?;
    (path.file_name()? == MODEL_FILE && dir.join(STATE_FILE).is_file()).then_some(dir)
}

impl Checkpoint {
    /// The tensors of the checkpoint's weights file (every variable of the run's learner), read
    /// only after its SHA-256 matches the one recorded when it was written: what every reader of
    /// a checkpoint's weights uses (resume, `eval`, `predict`, a consulted classifier, `convert`).
    pub fn model_tensors(&self) -> Result<Vec<(String, Tensor)>> {
        self.read_checked(MODEL_FILE, "weights")
    }

    /// Loads the weights into `vs`, refusing (naming it) any variable that is missing or has
    /// another shape or kind in the file; nothing is loaded unless every one matches.
    pub fn load_model(&self, vs: &mut VarStore) -> Result<()> {
        let stored = self.model_tensors()?;
        crate::files::load_tensors_checked(vs, &self.dir.join(MODEL_FILE), stored)
    }

    /// The optimiser's state (empty for an optimiser without any); a file the checkpoint
    /// recorded is required.
    pub fn optimizer_state(&self) -> Result<Vec<(String, Tensor)>> {
        let path = self.dir.join(OPTIMIZER_FILE);
        if !path.exists() {
            if self.state.files.contains_key(OPTIMIZER_FILE) {
                return Err(Error::data(&path, "is missing (the checkpoint recorded one)"));
            }
            return Ok(Vec::new());
        }
        self.read_checked(OPTIMIZER_FILE, "optimizer state")
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.join(CONFIG_FILE)
    }

    /// The tensors of one of the checkpoint's files, after [`Checkpoint::verify`]; `what` names
    /// its content in the error for a file that is not safetensors.
    fn read_checked(&self, file: &str, what: &str) -> Result<Vec<(String, Tensor)>> {
        self.verify(file)?;
        let path = self.dir.join(file);
        crate::files::read_safetensors(&path, what)
    }

    /// Compares a file's SHA-256 with the one recorded when the checkpoint was written.
    fn verify(&self, file: &str) -> Result<()> {
        let Some(want) = self.state.files.get(file) else { return Ok(()) };
        let path = self.dir.join(file);
        let got = sha256_file(&path)?;
        if &got != want {
            return Err(Error::data(
                &path,
                format!("checksum mismatch (sha256 {got}, recorded {want}): the file changed after it was written"),
            ));
        }
        Ok(())
    }

    /// Whether the folder is whole: its config and weights are there, and each tensor file
    /// whose checksum `state.json` records matches it.
    fn verify_all(&self) -> Result<()> {
        for file in [CONFIG_FILE, MODEL_FILE] {
            let path = self.dir.join(file);
            if !path.is_file() {
                return Err(Error::data(&path, "is missing"));
            }
        }
        [MODEL_FILE, OPTIMIZER_FILE].into_iter().try_for_each(|file| self.verify(file))
    }
}

/// The SHA-256 of a file, as lowercase hex.
pub fn sha256_file(path: &Path) -> Result<String> {
    use sha2::Digest;
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    Ok(sha2::Sha256::digest(&bytes).iter().map(|b| format!("{b:02x}")).collect())
}
