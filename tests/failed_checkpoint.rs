//! A checkpoint write that fails (a full disk, through the writer's test hook
//! `SAMIX_TEST_EXIT_AT=checkpoint-disk-full:FOLDER`) leaves no staging folder, names the file with
//! the OS's message, and a later `--resume` says what is safe (issue 24 R13).
mod common;

use common::tiny_fashion_config;
use std::path::Path;
use std::process::Output;

/// `samix train` of `t.toml` in `dir` into `out` with `flags`; `fail_at`: the checkpoint whose
/// write fails as on a full disk.
fn train(dir: &Path, out: &str, flags: &[&str], fail_at: Option<&str>) -> Output {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_samix"));
    cmd.args(["train", "--config", "t.toml", "--out", out, "--device", "cpu"]).args(flags).current_dir(dir);
    if let Some(at) = fail_at {
        cmd.env(samix::train::checkpoint::EXIT_POINT_VAR, format!("checkpoint-disk-full:{at}"));
    }
    cmd.output().unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The first checkpoint fails: `checkpoints.tmp` is removed, and `--resume` says that no
/// checkpoint was completed and that `--force` starts afresh safely (before: the staging folder
/// stayed and `--resume` said only "no checkpoint found (checkpoints/latest)"). A later one fails:
/// its `.tmp` folder is removed and `--resume` continues from the one before.
#[test]
fn a_failed_checkpoint_leaves_no_staging_folder_and_resume_says_what_is_safe() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    std::fs::write(dir.join("t.toml"), tiny_fashion_config(100, 50, 2, r#"policy = "none""#)).unwrap();
    let o = train(dir, "run", &[], Some("epoch-0001"));
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("state.json") && err.contains("No space left on device"), "{err}");
    assert!(!dir.join("run/checkpoints.tmp").exists(), "the staging folder stayed");
    assert!(!dir.join("run/checkpoints").exists());
    let o = train(dir, "run", &["--resume"], None);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("no checkpoint was completed") && err.contains("--force"), "{err}");
    let o = train(dir, "run", &["--force"], Some("epoch-0002"));
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(dir.join("run/checkpoints/epoch-0001").is_dir(), "{err}");
    assert!(!dir.join("run/checkpoints/epoch-0002.tmp").exists(), "the temporary folder stayed");
    let o = train(dir, "run", &["--resume"], None);
    let err = stderr(&o);
    assert!(o.status.success() && err.contains("resumed from") && err.contains("epoch-0001"), "{err}");
}
