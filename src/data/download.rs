//! `samix data download`: fetches a dataset's official files into a data directory, in the same
//! layout as ../shared/datasets (`cifar-10-binary.tar.gz`, `cifar-100-binary.tar.gz`, `mnist/`,
//! `fashion-mnist/`, `tiny-imagenet-200/`). Each file is streamed to `<name>.part` (resumed with an
//! HTTP Range request after an interruption; the next mirror on failure), checked against its md5
//! where one is published, then renamed into place; finally the whole dataset is loaded with the
//! training loaders (sizes, labels, md5 of the extracted files). A failure removes what this call
//! wrote and names the file and the check. A dataset already present and valid is not fetched.
use super::config::DatasetKind;
pub use super::transfer::{fetch_file, md5_file, DownloadOptions, RemoteFile};
use super::{cifar, folder, idx};
use crate::{Error, Result};
use std::path::{Path, PathBuf};

/// The size bound of each file of a dataset, with ample room over the real sizes (IDX images
/// ≤ 26 MB gzipped, CIFAR archives ≤ 170 MB, the Tiny-ImageNet zip ≈ 248 MB).
fn max_download_bytes(kind: DatasetKind) -> u64 {
    const MIB: u64 = 1 << 20;
    match kind {
        DatasetKind::Mnist | DatasetKind::FashionMnist => 64 * MIB,
        DatasetKind::Cifar10 | DatasetKind::Cifar100 => 256 * MIB,
        DatasetKind::TinyImagenet
        | DatasetKind::ImageFolder
        | DatasetKind::Cub200
        | DatasetKind::Aircraft
        | DatasetKind::Imagenet => 512 * MIB,
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
        DatasetKind::ImageFolder | DatasetKind::Cub200 | DatasetKind::Aircraft | DatasetKind::Imagenet => {
            (vec![], vec![], None)
        }
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
        DatasetKind::ImageFolder | DatasetKind::Cub200 | DatasetKind::Aircraft | DatasetKind::Imagenet => return None,
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
        DatasetKind::Cub200 => super::fine_grained::load_cub200(path).map(|_| ()),
        DatasetKind::Aircraft => super::fine_grained::load_aircraft(path).map(|_| ()),
        DatasetKind::Imagenet => super::imagenet::load_imagenet(path).map(|_| ()),
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
/// md5 is not known is kept as it is and judged by the final validation, unless the loaders
/// named it corrupt: then it is fetched again, and replaced by what is fetched), and an archive's
/// target folder that already exists is never replaced.
pub fn fetch(source: &DatasetSource, data_dir: &Path, opts: &DownloadOptions) -> Result<Fetched> {
    let target = dataset_path(data_dir, source.kind)
        .ok_or_else(|| Error::Argument("image folders are not downloaded".into()))?;
    let target_existed = target.exists();
    // The file the loaders found corrupt (an md5 that differs from the official one), if any:
    // fetched again even where the source knows no md5 of its own (issue 24 R13: it was kept, and
    // every later call failed on it).
    let corrupt = match target_existed.then(|| validate(source.kind, &target)) {
        Some(Ok(())) => return Ok(Fetched::AlreadyPresent(target)),
        Some(Err(Error::Data { path, .. })) => Some(path),
        _ => None,
    };
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
                None if existed && !corrupt.as_ref().is_some_and(|p| p.starts_with(&dest)) => continue,
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
