//! One file of a download over HTTP(S): streamed to `<name>.part`, resumed with a Range request
//! after an interruption, the next mirror on failure, every wait bounded and reported, then
//! checked against its md5 and renamed into place. Used by `data::download`; touches only the
//! file it is given.
use crate::{Error, Result};
use std::io::{Read, Write};
use std::path::Path;

/// One file of a dataset and where it can be fetched.
#[derive(Clone, Debug)]
pub struct RemoteFile {
    /// Path inside the data directory.
    pub name: String,
    /// Full URLs, tried in order.
    pub urls: Vec<String>,
    /// md5 of the file as published, if known.
    pub md5: Option<String>,
    /// The most bytes accepted for this file (a server announcing or sending more is refused):
    /// a bound on what a wrong or hostile mirror can write to the disk.
    pub max_bytes: u64,
}

#[derive(Clone, Debug)]
pub struct DownloadOptions {
    /// Attempts per mirror; each one after an interruption resumes where the last stopped.
    pub attempts_per_mirror: usize,
    pub progress: bool,
    pub timeout: std::time::Duration,
}

impl Default for DownloadOptions {
    fn default() -> Self {
        DownloadOptions { attempts_per_mirror: 3, progress: false, timeout: std::time::Duration::from_secs(60) }
    }
}

/// The md5 of a file, in lower-case hex.
pub fn md5_file(path: &Path) -> Result<String> {
    use md5::{Digest, Md5};
    let mut f = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut h = Md5::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(|e| Error::io(path, e))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

/// Fetches one file through its mirrors into `dest` (via `dest.part`), checking its md5.
pub fn fetch_file(file: &RemoteFile, dest: &Path, opts: &DownloadOptions) -> Result<()> {
    let part =
        dest.with_file_name(format!("{}.part", dest.file_name().map(|n| n.to_string_lossy()).unwrap_or_default()));
    // One line per mirror: why it failed last, and after how many attempts.
    let mut failures: Vec<String> = Vec::new();
    for url in &file.urls {
        let mut attempts = 0;
        let mut last = String::new();
        for _ in 0..opts.attempts_per_mirror.max(1) {
            attempts += 1;
            // Said before each wait, so a slow or silent mirror is never a silent wait here.
            tracing::info!(
                "downloading {url} (attempt {attempts} of {}, giving up after {} s without an answer)",
                opts.attempts_per_mirror.max(1),
                opts.timeout.as_secs_f64()
            );
            match download_resuming(url, &part, file.max_bytes, opts) {
                Ok(()) => {
                    if let Some(want) = &file.md5 {
                        let got = md5_file(&part)?;
                        if &got != want {
                            let _ = std::fs::remove_file(&part);
                            last = format!("md5 {got}, expected {want}");
                            break;
                        }
                    }
                    return std::fs::rename(&part, dest).map_err(|e| Error::io(dest, e));
                }
                Err(DownloadError::Fatal(msg)) => {
                    last = msg;
                    let _ = std::fs::remove_file(&part);
                    break;
                }
                Err(DownloadError::Interrupted(msg)) => last = msg,
            }
        }
        let tries = if attempts > 1 { format!(" ({attempts} attempts)") } else { String::new() };
        failures.push(format!("  {url}: {last}{tries}"));
    }
    let _ = std::fs::remove_file(&part);
    Err(Error::data(dest, format!("download failed from every mirror:\n{}", failures.join("\n"))))
}

enum DownloadError {
    /// Worth retrying the same URL (the partial file is kept and resumed).
    Interrupted(String),
    /// Not worth retrying this URL (HTTP error status, bad URL).
    Fatal(String),
}

fn too_large(n: u64, max_bytes: u64) -> DownloadError {
    DownloadError::Fatal(format!("{n} bytes is more than the {max_bytes} this file can be; refused"))
}

/// Appends to `part` from where it stops (Range request); restarts if the server ignores ranges.
fn download_resuming(
    url: &str,
    part: &Path,
    max_bytes: u64,
    opts: &DownloadOptions,
) -> std::result::Result<(), DownloadError> {
    let have = std::fs::metadata(part).map(|m| m.len()).unwrap_or(0);
    if have > max_bytes {
        return Err(too_large(have, max_bytes));
    }
    let Some(response) = request_from(url, part, have, opts)? else { return Ok(()) };
    let append = have > 0 && response.status() == 206;
    if append {
        // A partial answer must continue exactly where the file stops.
        let start = response
            .header("Content-Range")
            .and_then(|v| v.trim().strip_prefix("bytes ")?.split('-').next()?.parse::<u64>().ok());
        if start != Some(have) {
            let _ = std::fs::remove_file(part);
            return Err(DownloadError::Interrupted(format!(
                "the server resumed at another byte than {have}; restarting"
            )));
        }
    }
    let total =
        response
            .header("Content-Length")
            .and_then(|v| v.parse::<u64>().ok())
            .map(|n| if append { n + have } else { n });
    if let Some(t) = total.filter(|&t| t > max_bytes) {
        return Err(too_large(t, max_bytes));
    }
    let body = Body { url, part, start: if append { have } else { 0 }, total, max_bytes };
    write_body(response, &body, opts)
}

/// The GET of `url` from byte `have` on; `None` when the file is already complete (the server
/// answers 416 with its size equal to `have`).
fn request_from(
    url: &str,
    part: &Path,
    have: u64,
    opts: &DownloadOptions,
) -> std::result::Result<Option<ureq::Response>, DownloadError> {
    let agent = ureq::AgentBuilder::new().timeout_connect(opts.timeout).timeout_read(opts.timeout).build();
    let mut request = agent.get(url);
    if have > 0 {
        request = request.set("Range", &format!("bytes={have}-"));
    }
    match request.call() {
        Ok(r) => Ok(Some(r)),
        // 416: the range starts at or past the end. Complete only if the server's size
        // (`Content-Range: bytes */N`) is what we have; otherwise start over.
        Err(ureq::Error::Status(416, r)) if have > 0 => {
            let size = r.header("Content-Range").and_then(|v| v.trim().strip_prefix("bytes */")?.parse::<u64>().ok());
            if size == Some(have) {
                return Ok(None);
            }
            let _ = std::fs::remove_file(part);
            Err(DownloadError::Interrupted(format!(
                "the server refused to resume at byte {have} (its size: {}); restarting",
                size.map_or_else(|| "not given".to_string(), |n| n.to_string())
            )))
        }
        Err(ureq::Error::Status(code, _)) => Err(DownloadError::Fatal(format!("HTTP {code}"))),
        // A mirror that took the connection and never answered: waiting on it again would only
        // repeat the wait (three attempts once made 184 s of silence per file), so the next
        // mirror is tried at once.
        Err(ureq::Error::Transport(t)) if is_timeout(&t) => Err(DownloadError::Fatal(format!(
            "no answer within {} s (the mirror took the connection but sent nothing)",
            opts.timeout.as_secs_f64()
        ))),
        Err(ureq::Error::Transport(t)) => {
            // The kind and cause, without the URL (the caller names it once per mirror).
            let msg = t.message().map_or_else(String::new, |m| format!(": {m}"));
            Err(DownloadError::Interrupted(format!("{}{msg}", t.kind())))
        }
    }
}

/// Whether a transport error is a timeout (connecting, or waiting for the response's head).
fn is_timeout(t: &ureq::Transport) -> bool {
    use std::error::Error as _;
    let io_kind = t.source().and_then(|s| s.downcast_ref::<std::io::Error>()).map(std::io::Error::kind);
    matches!(io_kind, Some(std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock))
}

/// Where a response's body goes: `part`, from byte `start` (0: the file is rewritten), `total`
/// bytes in all when the server says, never more than `max_bytes`.
struct Body<'a> {
    url: &'a str,
    part: &'a Path,
    start: u64,
    total: Option<u64>,
    max_bytes: u64,
}

/// Copies the response's body into the file, with a progress bar when asked.
fn write_body(response: ureq::Response, body: &Body, opts: &DownloadOptions) -> std::result::Result<(), DownloadError> {
    let Body { url, part, start, total, max_bytes } = *body;
    let mut out = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .append(start > 0)
        .truncate(start == 0)
        .open(part)
        .map_err(|e| DownloadError::Fatal(format!("{}: {e}", part.display())))?;
    let bar = (opts.progress).then(|| {
        let bar = indicatif::ProgressBar::new(total.unwrap_or(0));
        bar.set_style(
            indicatif::ProgressStyle::with_template("{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} ETA {eta}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        bar.set_message(url.rsplit('/').next().unwrap_or(url).to_string());
        bar.set_position(start);
        bar
    });
    let mut reader = response.into_reader();
    let mut buf = vec![0u8; 1 << 16];
    let mut written = start;
    loop {
        let n = reader.read(&mut buf).map_err(|e| DownloadError::Interrupted(e.to_string()))?;
        if n == 0 {
            break;
        }
        out.write_all(&buf[..n]).map_err(|e| DownloadError::Fatal(format!("{}: {e}", part.display())))?;
        written += n as u64;
        if written > max_bytes {
            return Err(too_large(written, max_bytes));
        }
        if let Some(b) = &bar {
            b.set_position(written);
        }
    }
    out.sync_all().map_err(|e| DownloadError::Fatal(e.to_string()))?;
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    match total {
        Some(t) if written < t => Err(DownloadError::Interrupted(format!("got {written} of {t} bytes"))),
        _ => Ok(()),
    }
}
