//! `samix data download`: fetches a dataset's official files into a data directory, in the same
//! layout as ../shared/datasets (`cifar-10-binary.tar.gz`, `cifar-100-binary.tar.gz`, `mnist/`,
//! `fashion-mnist/`, `tiny-imagenet-200/`). Each file is streamed to `<name>.part` (resumed with an
//! HTTP Range request after an interruption; the next mirror on failure), checked against its md5
//! where one is published, then renamed into place; finally the whole dataset is loaded with the
//! training loaders (sizes, labels, md5 of the extracted files). A failure removes what this call
//! wrote and names the file and the check. A dataset already present and valid is not fetched.
use super::config::DatasetKind;
use super::{cifar, folder, idx};
use crate::{Error, Result};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

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

/// The size bound of each file of a dataset, with ample room over the real sizes (IDX images
/// ≤ 26 MB gzipped, CIFAR archives ≤ 170 MB, the Tiny-ImageNet zip ≈ 248 MB).
fn max_download_bytes(kind: DatasetKind) -> u64 {
    const MIB: u64 = 1 << 20;
    match kind {
        DatasetKind::Mnist | DatasetKind::FashionMnist => 64 * MIB,
        DatasetKind::Cifar10 | DatasetKind::Cifar100 => 256 * MIB,
        DatasetKind::TinyImagenet | DatasetKind::ImageFolder => 512 * MIB,
    }
}

/// What to fetch for a dataset and how to unpack it.
#[derive(Clone, Debug)]
pub struct DatasetSource {
    pub kind: DatasetKind,
    pub files: Vec<RemoteFile>,
    /// A zip archive to extract into the data directory (Tiny-ImageNet), then delete.
    pub unzip: Option<String>,
}

/// (remote file name, local file or folder it goes to, its md5 when known).
type OfficialFile = (&'static str, &'static str, Option<&'static str>);

/// Mirrors, in order, for each dataset. Sources: the publishers' pages (CIFAR:
/// cs.toronto.edu/~kriz/cifar.html, with the archive md5; MNIST: yann.lecun.com/exdb/mnist plus
/// the mirrors torchvision and TensorFlow use; Fashion-MNIST: the project's S3 bucket and its
/// GitHub repository; Tiny-ImageNet: cs231n.stanford.edu).
fn official_mirrors(kind: DatasetKind) -> (Vec<&'static str>, Vec<OfficialFile>, Option<&'static str>) {
    match kind {
        DatasetKind::Cifar10 => (
            vec!["https://www.cs.toronto.edu/~kriz/"],
            vec![("cifar-10-binary.tar.gz", "cifar-10-binary.tar.gz", Some("c32a1d4ab5d03f1284b67883e8d87530"))],
            None,
        ),
        // The archive's md5 is not quoted here; its extracted train.bin / test.bin are checked.
        DatasetKind::Cifar100 => (
            vec!["https://www.cs.toronto.edu/~kriz/"],
            vec![("cifar-100-binary.tar.gz", "cifar-100-binary.tar.gz", None)],
            None,
        ),
        DatasetKind::Mnist => (
            vec![
                "https://ossci-datasets.s3.amazonaws.com/mnist/",
                "https://storage.googleapis.com/cvdf-datasets/mnist/",
                "http://yann.lecun.com/exdb/mnist/",
            ],
            idx::FILES.iter().map(|(f, _)| (*f, "mnist", None)).collect(),
            None,
        ),
        DatasetKind::FashionMnist => (
            vec![
                "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
                "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",
            ],
            idx::FILES.iter().map(|(f, _)| (*f, "fashion-mnist", None)).collect(),
            None,
        ),
        // md5 as used by public Tiny-ImageNet loaders (e.g. lvyilin/pytorch-fgvc-dataset).
        DatasetKind::TinyImagenet => (
            vec!["http://cs231n.stanford.edu/"],
            vec![("tiny-imagenet-200.zip", "tiny-imagenet-200.zip", Some("90528d7ca1a48142e341f4ef8d21d0de"))],
            Some("tiny-imagenet-200.zip"),
        ),
        DatasetKind::ImageFolder => (vec![], vec![], None),
    }
}

impl DatasetSource {
    /// The official sources, or the same file names under `base_urls` (mirrors you host).
    pub fn new(kind: DatasetKind, base_urls: Option<&[String]>) -> Result<Self> {
        let (bases, files, unzip) = official_mirrors(kind);
        if files.is_empty() {
            return Err(Error::Argument(format!("`{}` has no download source (it is your own folder)", kind.name())));
        }
        let bases: Vec<String> = match base_urls {
            Some(b) => b.to_vec(),
            None => bases.iter().map(|s| s.to_string()).collect(),
        };
        let files = files
            .into_iter()
            .map(|(remote, local, md5)| {
                // IDX files are published gzipped; the local name keeps the `.gz`.
                let (remote, name) = if local == "mnist" || local == "fashion-mnist" {
                    (format!("{remote}.gz"), format!("{local}/{remote}.gz"))
                } else {
                    (remote.to_string(), local.to_string())
                };
                RemoteFile {
                    urls: bases.iter().map(|b| format!("{}/{remote}", b.trim_end_matches('/'))).collect(),
                    name,
                    md5: md5.map(String::from),
                    max_bytes: max_download_bytes(kind),
                }
            })
            .collect();
        Ok(DatasetSource { kind, files, unzip: unzip.map(String::from) })
    }
}

/// Where a dataset lives inside a data directory (the ../shared/datasets layout).
pub fn dataset_path(data_dir: &Path, kind: DatasetKind) -> Option<PathBuf> {
    let name = match kind {
        DatasetKind::Cifar10 => "cifar-10-binary.tar.gz",
        DatasetKind::Cifar100 => "cifar-100-binary.tar.gz",
        DatasetKind::Mnist => "mnist",
        DatasetKind::FashionMnist => "fashion-mnist",
        DatasetKind::TinyImagenet => "tiny-imagenet-200",
        DatasetKind::ImageFolder => return None,
    };
    Some(data_dir.join(name))
}

/// `$SAMIX_DATA`, else the platform cache directory (`~/.cache/samix/data` on Linux).
pub fn default_data_dir() -> PathBuf {
    match std::env::var_os("SAMIX_DATA") {
        Some(d) if !d.is_empty() => PathBuf::from(d),
        _ => dirs::cache_dir().unwrap_or_else(|| PathBuf::from(".cache")).join("samix").join("data"),
    }
}

/// Loads the dataset at `path` with the training loaders and checks known md5 sums.
pub fn validate(kind: DatasetKind, path: &Path) -> Result<()> {
    match kind {
        DatasetKind::Cifar10 | DatasetKind::Cifar100 => cifar::load(path, kind, true).map(|_| ()),
        DatasetKind::Mnist | DatasetKind::FashionMnist => idx::load(path, kind, true).map(|_| ()),
        DatasetKind::TinyImagenet => folder::load_tiny_imagenet(path).map(|_| ()),
        DatasetKind::ImageFolder => folder::load_image_folder(path).map(|_| ()),
    }
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

/// What `fetch` did.
#[derive(Debug, PartialEq, Eq)]
pub enum Fetched {
    AlreadyPresent(PathBuf),
    Downloaded(PathBuf),
}

/// Makes the dataset available under `data_dir`, downloading only what is missing or invalid.
/// A failed call removes only what it created: files that were there before stay (a file whose
/// md5 is not known is kept as it is and judged by the final validation), and an archive's
/// target folder that already exists is never replaced.
pub fn fetch(source: &DatasetSource, data_dir: &Path, opts: &DownloadOptions) -> Result<Fetched> {
    let target = dataset_path(data_dir, source.kind)
        .ok_or_else(|| Error::Argument("image folders are not downloaded".into()))?;
    let target_existed = target.exists();
    if target_existed && validate(source.kind, &target).is_ok() {
        return Ok(Fetched::AlreadyPresent(target));
    }
    if target_existed && source.unzip.is_some() {
        let msg = "exists but is not a valid copy of the dataset; samix does not replace a folder it did not create — move it away and download again";
        return Err(Error::data(&target, msg));
    }
    std::fs::create_dir_all(data_dir).map_err(|e| Error::io(data_dir, e))?;
    let mut written: Vec<PathBuf> = Vec::new();
    // Folders this call creates (the dataset's own, e.g. `mnist/`): removed again on failure,
    // so that a failed download leaves no empty folder that looks like a present dataset.
    let mut made_dirs: Vec<PathBuf> = Vec::new();
    let result = (|| -> Result<()> {
        for file in &source.files {
            let dest = data_dir.join(&file.name);
            if let Some(parent) = dest.parent() {
                if !parent.exists() {
                    made_dirs.push(parent.to_path_buf());
                }
                std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
            }
            let existed = dest.exists();
            match file.md5.as_deref() {
                Some(m) if existed && md5_file(&dest).ok().as_deref() == Some(m) => continue,
                None if existed => continue,
                _ => {}
            }
            fetch_file(file, &dest, opts)?;
            if !existed {
                written.push(dest);
            }
        }
        if let Some(zip_name) = &source.unzip {
            let zip_path = data_dir.join(zip_name);
            extract_zip(&zip_path, data_dir, &target)?;
            let _ = std::fs::remove_file(&zip_path);
        }
        validate(source.kind, &target)
    })();
    if let Err(e) = result {
        for f in &written {
            let _ = std::fs::remove_file(f);
        }
        if source.unzip.is_some() && !target_existed {
            let _ = std::fs::remove_dir_all(&target);
        }
        for dir in made_dirs.iter().rev() {
            // Only if empty: `remove_dir` refuses a folder with anything left in it.
            let _ = std::fs::remove_dir(dir);
        }
        return Err(e);
    }
    Ok(Fetched::Downloaded(target))
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

/// Extracts a zip into a temporary folder beside `target` (inside `data_dir`), then renames its
/// top folder to `target`. Entries whose paths leave the folder are not written anywhere.
pub fn extract_zip(zip_path: &Path, data_dir: &Path, target: &Path) -> Result<()> {
    let file = std::fs::File::open(zip_path).map_err(|e| Error::io(zip_path, e))?;
    let mut archive =
        zip::ZipArchive::new(file).map_err(|e| Error::data(zip_path, format!("not a zip archive: {e}")))?;
    let tmp = data_dir.join(".unzip.tmp");
    let _ = std::fs::remove_dir_all(&tmp);
    archive.extract(&tmp).map_err(|e| Error::data(zip_path, format!("cannot extract: {e}")))?;
    let inner = tmp.join(target.file_name().unwrap_or_default());
    let from = if inner.is_dir() { inner } else { tmp.clone() };
    if target.exists() {
        std::fs::remove_dir_all(target).map_err(|e| Error::io(target, e))?;
    }
    std::fs::rename(&from, target).map_err(|e| Error::io(target, e))?;
    let _ = std::fs::remove_dir_all(&tmp);
    Ok(())
}
