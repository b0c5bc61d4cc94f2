//! The run directory's lock: one training process at a time writes a run. It is an advisory lock
//! (flock(2)) on the run directory itself, so deleting a file cannot defeat it, and the kernel
//! releases it however its holder ends (a crash included). The holder writes its pid and host into
//! `.samix-run.lock` for the error a second process gets, and removes that file when it is done;
//! where that file is gone, the error takes the holder's pid from the kernel's lock table
//! (/proc/locks). Where the file system cannot lock a directory (NFS emulates flock with
//! byte-range locks, which need a file open for writing), the lock is taken on `.samix-run.lock`
//! itself, which then must stay while a run trains, and stays (emptied) after it.
use crate::{Error, Result};
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

/// The file that names the lock's holder (and is the lock where a directory cannot be locked).
pub const HOLDER_FILE: &str = ".samix-run.lock";

/// An exclusive hold on a run directory for as long as it lives (released when dropped, and by
/// the kernel when the process ends, however it ends).
#[derive(Debug)]
pub struct RunLock {
    /// The locked descriptor (the run directory, or the holder file); closing it unlocks.
    locked: File,
    /// The holder file, and what this process wrote into it.
    holder: PathBuf,
    written: String,
    /// Whether the lock is on the holder file itself (which then stays, emptied).
    on_holder_file: bool,
}

impl Drop for RunLock {
    fn drop(&mut self) {
        // Only while the file still names this process; the lock itself goes with `locked`.
        if std::fs::read_to_string(&self.holder).is_ok_and(|t| t == self.written) {
            let _ = if self.on_holder_file { self.locked.set_len(0) } else { std::fs::remove_file(&self.holder) };
        }
    }
}

/// Takes the run directory's lock without waiting: a second training process on the same
/// directory is refused at once, with an error naming the holder (pid, host) and the directory.
pub fn lock(out: &Path) -> Result<RunLock> {
    std::fs::create_dir_all(out).map_err(|e| Error::io(out, e))?;
    let holder = out.join(HOLDER_FILE);
    let written = format!("pid={}\nhost={}\n", std::process::id(), hostname());
    match File::open(out).map(|dir| (try_lock(&dir), dir)) {
        Ok((Ok(true), dir)) => {
            crate::files::write_atomic(&holder, written.as_bytes())?;
            Ok(RunLock { locked: dir, holder, written, on_holder_file: false })
        }
        Ok((Ok(false), dir)) => Err(held(out, &dir)),
        // This file system (or platform) cannot lock a directory: the holder file is the lock.
        Ok((Err(_), _)) | Err(_) => lock_holder_file(out, holder, written),
    }
}

/// The lock on the holder file itself, written in place (replacing it would move the lock).
fn lock_holder_file(out: &Path, holder: PathBuf, written: String) -> Result<RunLock> {
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(&holder)
        .map_err(|e| Error::io(&holder, e))?;
    match try_lock(&file) {
        Ok(true) => {}
        Ok(false) => return Err(held(out, &file)),
        Err(e) => return Err(Error::io(&holder, e)),
    }
    file.set_len(0).and_then(|()| file.write_all(written.as_bytes())).map_err(|e| Error::io(&holder, e))?;
    Ok(RunLock { locked: file, holder, written, on_holder_file: true })
}

/// An exclusive flock(2) without waiting: `Ok(false)` when another descriptor holds it.
#[cfg(unix)]
fn try_lock(file: &File) -> std::io::Result<bool> {
    use std::os::unix::io::AsRawFd;
    loop {
        // SAFETY: flock on a descriptor the caller owns; it only sets an advisory lock.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
            return Ok(true);
        }
        let e = std::io::Error::last_os_error();
        match e.kind() {
            std::io::ErrorKind::WouldBlock => return Ok(false),
            std::io::ErrorKind::Interrupted => continue,
            _ => return Err(e),
        }
    }
}

/// No advisory locks here: the run is not locked (as before locks existed).
#[cfg(not(unix))]
fn try_lock(_file: &File) -> std::io::Result<bool> {
    Ok(true)
}

/// The refusal: the run directory, and who holds it.
fn held(out: &Path, locked: &File) -> Error {
    let who = holder_in_lock_table(locked)
        .or_else(|| holder_in_file(&out.join(HOLDER_FILE)))
        .map_or_else(|| "pid and host unknown".to_string(), |(pid, host)| format!("pid {pid} on host {host}"));
    Error::run(
        out,
        format!(
            "another samix process ({who}) is training in this run directory and holds its lock; wait for it to end or choose another --out"
        ),
    )
}

/// The holder as its file names it (`pid=…` and `host=…` lines).
fn holder_in_file(path: &Path) -> Option<(u32, String)> {
    let text = std::fs::read_to_string(path).ok()?;
    let value = |key: &str| text.lines().find_map(|l| l.strip_prefix(key)).map(str::trim);
    let pid = value("pid=")?.parse().ok()?;
    Some((pid, value("host=").unwrap_or("unknown").to_string()))
}

/// The process holding a flock on `locked`'s file, from the kernel's lock table: lines like
/// `1: FLOCK  ADVISORY  WRITE 1322 fe:00:5308742 0 EOF` (pid, then device major:minor in hex and
/// inode). Only a process of this host shows there.
#[cfg(target_os = "linux")]
fn holder_in_lock_table(locked: &File) -> Option<(u32, String)> {
    use std::os::unix::fs::MetadataExt;
    let meta = locked.metadata().ok()?;
    let dev = meta.dev();
    // glibc's major()/minor() of a device number.
    let (major, minor) = (((dev >> 8) & 0xfff) | ((dev >> 32) & !0xfff), (dev & 0xff) | ((dev >> 12) & !0xff));
    let id = format!("{major:02x}:{minor:02x}:{}", meta.ino());
    let table = std::fs::read_to_string("/proc/locks").ok()?;
    let pid = table.lines().find_map(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        // Waiters have `->` after the number, which shifts their fields: they never match.
        match f.as_slice() {
            [_, "FLOCK", _, _, pid, file, ..] if *file == id => pid.parse().ok(),
            _ => None,
        }
    })?;
    Some((pid, hostname()))
}

#[cfg(not(target_os = "linux"))]
fn holder_in_lock_table(_locked: &File) -> Option<(u32, String)> {
    None
}

/// This machine's host name (gethostname(2)); `unknown` where it cannot be read.
fn hostname() -> String {
    #[cfg(unix)]
    {
        let mut buf = [0u8; 256];
        // SAFETY: gethostname writes at most `buf.len()` bytes into a buffer this function owns.
        if unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) } == 0 {
            let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
            return String::from_utf8_lossy(&buf[..end]).into_owned();
        }
    }
    "unknown".into()
}
