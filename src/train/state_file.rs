//! A checkpoint's `state.json`: the counters, seed, tensor-file checksums and interrupted-epoch
//! record a resume continues from, sealed by a SHA-256 of its own content so a damaged value
//! that stays in range is refused like a damaged tensor file. Touches only that one file.
use super::loss_sums::EpochSums;
use crate::files::write_json_atomic;
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::path::Path;

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CheckpointState {
    /// Epochs completed when the checkpoint was taken.
    pub epoch: usize,
    pub global_step: u64,
    pub seed: u64,
    pub samix_version: String,
    /// SHA-256 of each tensor file of the checkpoint, verified when it is loaded (absent in
    /// checkpoints written before this was recorded).
    #[serde(default)]
    pub files: std::collections::BTreeMap<String, String>,
    /// Set when the run was interrupted inside epoch `epoch + 1`: how far that epoch got.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partial: Option<PartialEpoch>,
    /// SHA-256 of the state's own content (its JSON without this field, keys sorted), set by
    /// [`write_state`] and verified by [`read_state`] (absent in checkpoints written before it
    /// was recorded, which are read on their range checks alone).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state_sha256: Option<String>,
}

/// How far an interrupted epoch got: what a resume needs to continue it exactly as the
/// uninterrupted run would have (the loader restarts at batch `steps`; the mixing stream at its
/// word position; the sums where they were).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PartialEpoch {
    /// Training steps of the epoch already taken.
    pub steps: usize,
    /// The sum of those steps' losses (f32 sums, exact as f64).
    pub loss_sum: f64,
    /// The word position of the epoch's mixing stream, in decimal (a u128: too wide for a JSON
    /// number).
    pub mix_stream_pos: String,
    /// Data-parallel runs: the stream positions of ranks 1, 2, ... (rank 0's is `mix_stream_pos`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rank_mix_stream_pos: Vec<String>,
    /// The learner's per-epoch sums so far (see `Learner::epoch_progress`).
    #[serde(default)]
    pub learner: EpochSums,
}

impl PartialEpoch {
    /// Where rank `rank`'s mixing stream was; `None` when the checkpoint has no position for it
    /// (written by fewer processes: that rank's draws for the rest of the epoch start afresh).
    pub fn stream_pos_of(&self, rank: usize) -> Result<Option<u128>> {
        let text = match rank {
            0 => &self.mix_stream_pos,
            r => match self.rank_mix_stream_pos.get(r - 1) {
                Some(t) => t,
                None => return Ok(None),
            },
        };
        text.parse::<u128>()
            .map(Some)
            .map_err(|e| Error::Argument(format!("checkpoint state: mixing stream position `{text}`: {e}")))
    }
}

/// The key of a state's seal.
const SEAL_KEY: &str = "state_sha256";

/// The SHA-256 (lowercase hex) of a JSON object's content without its seal: its compact form
/// with keys in sorted order (serde_json's map), so the seal covers what was written — whatever
/// fields the reading version of samix knows — and not the file's layout.
fn seal_of(mut value: serde_json::Value) -> String {
    use sha2::Digest;
    if let Some(map) = value.as_object_mut() {
        map.remove(SEAL_KEY);
    }
    sha2::Sha256::digest(value.to_string().as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

impl CheckpointState {
    /// The seal [`write_state`] records and [`read_state`] compares (floats round-trip bit for
    /// bit, so a state read back and written again keeps it).
    pub fn content_sha256(&self) -> Result<String> {
        let value = serde_json::to_value(self).map_err(|e| Error::Argument(format!("checkpoint state: {e}")))?;
        Ok(seal_of(value))
    }
}

/// Writes `state` to `path` (atomically) sealed with its [`CheckpointState::content_sha256`].
pub fn write_state(path: &Path, state: &CheckpointState) -> Result<()> {
    let sealed = CheckpointState { state_sha256: Some(state.content_sha256()?), ..state.clone() };
    write_json_atomic(path, &sealed)
}

/// Reads a `state.json`, refusing (naming the file) one whose content no longer matches the seal
/// it was written with, or whose seal is not a string.
pub fn read_state(path: &Path) -> Result<CheckpointState> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let value: serde_json::Value = serde_json::from_str(&text).map_err(|e| Error::data(path, e.to_string()))?;
    match value.get(SEAL_KEY) {
        Some(serde_json::Value::String(want)) => {
            let got = seal_of(value.clone());
            if &got != want {
                let msg = format!(
                    "checksum mismatch (sha256 {got} of its content, recorded {want}): the file changed after it was written"
                );
                return Err(Error::data(path, msg));
            }
        }
        Some(other) => return Err(Error::data(path, format!("`{SEAL_KEY}` is {other}, not a checksum"))),
        None => {}
    }
    serde_json::from_value(value).map_err(|e| Error::data(path, e.to_string()))
}
