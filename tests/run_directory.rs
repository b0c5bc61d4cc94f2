//! The run directory under `--force` and under two processes at once (issue 24, R1 and R2):
//! `--force` removes what samix wrote and nothing else, even inside the folders samix makes; the
//! run's lock cannot be defeated by deleting a file, names its holder, and goes with the holder.
//! Both tests drive the `samix` binary, as a user would; each failed on the code before the fix.
mod common;
use common::tiny_fashion_config;
use common::training::Training;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Every entry under `dir`, with the bytes of each file (`None` for a folder).
fn tree(dir: &Path) -> BTreeMap<PathBuf, Option<Vec<u8>>> {
    let mut all = BTreeMap::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            all.insert(path.clone(), None);
            all.extend(tree(&path));
        } else {
            all.insert(path.clone(), Some(std::fs::read(&path).unwrap()));
        }
    }
    all
}

/// `samix ARGS...` to its end (bounded): the exit code and stderr.
fn samix(args: &[&str]) -> (Option<i32>, String) {
    Training::spawn(args).finish()
}

fn write_config(dir: &Path, epochs: usize, mix: &str) -> String {
    let path = dir.join("tiny.toml");
    std::fs::write(&path, tiny_fashion_config(100, 50, epochs, mix)).unwrap();
    path.to_string_lossy().into_owned()
}

/// The names in a folder.
fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> =
        std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    v.sort();
    v
}

/// The epochs of `metrics.jsonl`, in order.
fn logged_epochs(out: &Path) -> Vec<u64> {
    let text = std::fs::read_to_string(out.join("metrics.jsonl")).unwrap();
    let epoch = |l: &str| serde_json::from_str::<serde_json::Value>(l).unwrap()["epoch"].as_u64().unwrap();
    text.lines().filter(|l| l.ends_with('}')).map(epoch).collect()
}

#[test]
fn force_keeps_the_users_files_in_the_folders_samix_makes() {
    let tmp = tempfile::tempdir().unwrap();
    // SAMix with visuals and TensorBoard: the run writes every folder a run has.
    let config = write_config(tmp.path(), 1, "policy = \"samix\"\nvisual_every = 1");
    let out = tmp.path().join("run");
    let out_s = out.to_string_lossy().into_owned();
    let train = ["train", "--device", "cpu", "--config", &config, "--out", &out_s];
    let (code, err) = samix(&train);
    assert_eq!(code, Some(0), "{err}");
    let old_events = names(&out.join("tensorboard"));
    assert_eq!(old_events.len(), 1, "{old_events:?}");
    for f in ["visuals/masks_epoch_0001.png", "report/report.md", "report/top1.png", "checkpoints/epoch-0001"] {
        assert!(out.join(f).exists(), "the run wrote {f}");
    }
    // The user's own files, beside samix's in its folders and at the top.
    let mine = [
        "checkpoints/my_best.pt",
        "checkpoints/best/model.pt",
        "report/notes.md",
        "visuals/favourite.png",
        "tensorboard/events.out.tfevents.1700000000.workstation",
        "notes.txt",
        "my_data/x.bin",
    ];
    for f in mine {
        std::fs::create_dir_all(out.join(f).parent().unwrap()).unwrap();
        std::fs::write(out.join(f), format!("mine: {f}")).unwrap();
    }
    let mut force = train.to_vec();
    force.push("--force");
    let (code, err) = samix(&force);
    assert_eq!(code, Some(0), "{err}");
    for f in mine {
        let kept = std::fs::read_to_string(out.join(f)).unwrap_or_else(|e| panic!("{f} was deleted ({e}):\n{err}"));
        assert_eq!(kept, format!("mine: {f}"));
    }
    // One line says what was kept, naming each entry at the top of what samix did not write.
    let said: Vec<&str> = err.lines().filter(|l| l.contains("samix did not write")).collect();
    assert_eq!(said.len(), 1, "{err}");
    for f in ["checkpoints/my_best.pt", "checkpoints/best", "report/notes.md", "notes.txt", "my_data"] {
        assert!(said[0].contains(f), "{f} not named: {}", said[0]);
    }
    // What the first run wrote is gone (replaced, not appended to or added to).
    assert_eq!(logged_epochs(&out), vec![1], "metrics.jsonl of the new run only");
    let events = names(&out.join("tensorboard"));
    assert!(!events.contains(&old_events[0]), "the old event file is removed: {events:?}");
    assert_eq!(events.len(), 2, "the new run's event file and the user's: {events:?}");

    // A file inside a checkpoint folder (which samix replaces whole when it writes that checkpoint
    // again): --force refuses, naming it, and deletes nothing.
    std::fs::write(out.join("checkpoints/epoch-0001/note.txt"), "mine").unwrap();
    let before = tree(&out);
    let (code, err) = samix(&force);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("checkpoints/epoch-0001/note.txt") && err.contains("nothing was deleted"), "{err}");
    assert_eq!(err.lines().filter(|l| l.starts_with("error:")).count(), 1, "{err}");
    assert!(tree(&out) == before, "the refused --force changed the run directory");
    // Training on prunes the older checkpoint folder, but only of what samix wrote into it.
    let (code, err) = samix(&["train", "--device", "cpu", "--out", &out_s, "--resume", "--set", "train.epochs=2"]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(names(&out.join("checkpoints/epoch-0001")), vec!["note.txt"]);
    assert!(out.join("checkpoints/epoch-0002/model.safetensors").is_file());
}

/// This machine's host name, as gethostname(2) gives it.
fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most `buf.len()` bytes into a buffer this function owns.
    assert_eq!(unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) }, 0);
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

/// Deletes every file of `out` with `lock` in its name (what someone clearing a "stale" lock does).
fn delete_lock_files(out: &Path) {
    for name in names(out).iter().filter(|n| n.contains("lock")) {
        std::fs::remove_file(out.join(name)).unwrap();
    }
}

/// Asserts a refusal by the run's lock: one error line naming the holder and the run directory.
fn assert_refused_by(code: Option<i32>, err: &str, pid: u32, out: &Path) {
    assert_eq!(code, Some(1), "a second process on a held run must fail:\n{err}");
    let errors: Vec<&str> = err.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(errors.len(), 1, "{err}");
    for part in [format!("pid {pid}"), format!("host {}", hostname()), out.display().to_string()] {
        assert!(errors[0].contains(&part), "`{part}` not in: {}", errors[0]);
    }
}

#[test]
fn deleting_the_lock_file_does_not_let_a_second_process_into_a_held_run() {
    let tmp = tempfile::tempdir().unwrap();
    let config = write_config(tmp.path(), 1, r#"policy = "none""#);
    let out = tmp.path().join("run");
    let out_s = out.to_string_lossy().into_owned();
    let (code, err) = samix(&["train", "--device", "cpu", "--config", &config, "--out", &out_s]);
    assert_eq!(code, Some(0), "{err}");
    let left: Vec<String> = names(&out).into_iter().filter(|n| n.contains("lock")).collect();
    assert!(left.is_empty(), "a finished run leaves no lock file: {left:?}");

    // This process holds the run (as a training process does), and its lock file is deleted.
    let held = samix::train::run_dir::lock(&out).unwrap();
    delete_lock_files(&out);
    let before = tree(&out);
    let resume = ["train", "--device", "cpu", "--out", &out_s, "--resume", "--set", "train.epochs=2"];
    let force = ["train", "--device", "cpu", "--config", &config, "--out", &out_s, "--force"];
    for args in [&resume[..], &force[..]] {
        let (code, err) = samix(args);
        assert_refused_by(code, &err, std::process::id(), &out);
        assert!(tree(&out) == before, "{args:?}: the refused process wrote to the run directory");
    }
    drop(held);
    let (code, err) = samix(&resume);
    assert_eq!(code, Some(0), "free once released:\n{err}");
    assert_eq!(logged_epochs(&out), vec![1, 2]);

    // A run training in another process: deleting its lock file lets no `--resume` in, and a
    // crash (SIGKILL: no clean-up of any kind) releases the run.
    let config = write_config(tmp.path(), 10_000, r#"policy = "none""#);
    let long = tmp.path().join("long");
    let mut t = Training::start(Path::new(&config), &long, false);
    t.wait_for("epoch   2/"); // epoch 1 is checkpointed: a resume would have a run to continue
    delete_lock_files(&long);
    let long_s = long.to_string_lossy().into_owned();
    let (code, err) = samix(&["train", "--device", "cpu", "--out", &long_s, "--resume", "--stop-after", "1"]);
    assert!(t.is_running(), "the first run must still be training for this check");
    assert_refused_by(code, &err, t.pid(), &long);
    t.signal(libc::SIGKILL);
    let (code, _) = t.finish();
    assert_eq!(code, None, "killed by the signal");
    let epochs = logged_epochs(&long);
    assert_eq!(epochs, (1..=epochs.len() as u64).collect::<Vec<_>>(), "one line per epoch, in order");
    drop(samix::train::run_dir::lock(&long).expect("a crashed holder's lock is released"));
}
