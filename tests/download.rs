//! `samix data download` against a local HTTP server on 127.0.0.1 serving copies of the real
//! files: a full download, a resumed interruption, a corrupted file rejected with nothing left
//! behind, a 404 mirror followed by one that works, and no request at all when data is present.
mod common;
use common::http::{mnist_files, read_request, Server};
use common::*;
use samix::data::download::{self, DatasetSource, DownloadOptions, Fetched, RemoteFile};
use samix::data::DatasetKind;
use std::collections::HashMap;
use std::io::Write;
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

fn opts() -> DownloadOptions {
    DownloadOptions { timeout: std::time::Duration::from_secs(10), ..Default::default() }
}

#[test]
fn full_download_then_nothing_fetched_again() {
    let server = Server::start(mnist_files("a"), None);
    let dir = tempfile::tempdir().unwrap();
    let source = DatasetSource::new(DatasetKind::Mnist, Some(&[server.base("a")])).unwrap();
    let got = download::fetch(&source, dir.path(), &opts()).unwrap();
    assert_eq!(got, Fetched::Downloaded(dir.path().join("mnist")));
    for (name, _) in samix::data::idx::FILES {
        let f = format!("{name}.gz");
        assert_eq!(std::fs::read(dir.path().join("mnist").join(&f)).unwrap(), std::fs::read(mnist().join(&f)).unwrap());
    }
    assert_eq!(server.requests().len(), 4);
    assert_eq!(
        download::fetch(&source, dir.path(), &opts()).unwrap(),
        Fetched::AlreadyPresent(dir.path().join("mnist"))
    );
    assert_eq!(server.requests().len(), 4, "a present, valid dataset is not downloaded again");
}

#[test]
fn interrupted_download_resumes_with_a_range_request() {
    let big = "/a/train-images-idx3-ubyte.gz".to_string();
    let half = std::fs::metadata(mnist().join("train-images-idx3-ubyte.gz")).unwrap().len() as usize / 2;
    let server = Server::start(mnist_files("a"), Some((big.clone(), half)));
    let dir = tempfile::tempdir().unwrap();
    let source = DatasetSource::new(DatasetKind::Mnist, Some(&[server.base("a")])).unwrap();
    download::fetch(&source, dir.path(), &opts()).unwrap();
    let hits: Vec<Option<u64>> = server.requests().into_iter().filter(|(p, _)| *p == big).map(|(_, r)| r).collect();
    assert_eq!(hits, vec![None, Some(half as u64)], "second request resumes at the cut");
    assert_eq!(
        std::fs::read(dir.path().join("mnist/train-images-idx3-ubyte.gz")).unwrap(),
        std::fs::read(mnist().join("train-images-idx3-ubyte.gz")).unwrap()
    );
    assert!(!dir.path().join("mnist/train-images-idx3-ubyte.gz.part").exists());
}

#[test]
fn corrupted_file_is_rejected_and_nothing_is_left() {
    // One pixel changed inside a validly re-gzipped file: only the checksum can catch it.
    let mut files = mnist_files("a");
    let (_, mut raw) = samix::data::idx::read_idx_file(&mnist(), "t10k-images-idx3-ubyte").unwrap();
    raw[5000] ^= 0x55;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&raw).unwrap();
    files.insert("/a/t10k-images-idx3-ubyte.gz".into(), gz.finish().unwrap());
    let server = Server::start(files, None);
    let dir = tempfile::tempdir().unwrap();
    let source = DatasetSource::new(DatasetKind::Mnist, Some(&[server.base("a")])).unwrap();
    let err = download::fetch(&source, dir.path(), &opts()).unwrap_err().to_string();
    assert!(err.contains("t10k-images-idx3-ubyte") && err.contains("md5"), "{err}");
    // The folder this call created goes too: an empty `mnist/` would look like a present
    // dataset to the next run's auto-download.
    assert!(!dir.path().join("mnist").exists(), "nothing half-written may stay");

    // A single file with a published md5: the mismatch is named and neither the file nor its
    // .part stays.
    let dest = dir.path().join("one.gz");
    let file = RemoteFile {
        name: "one.gz".into(),
        urls: vec![format!("{}t10k-images-idx3-ubyte.gz", server.base("a"))],
        md5: Some("9fb629c4189551a2d022fa330f9573f3".into()),
        max_bytes: 1 << 26,
    };
    let err = download::fetch_file(&file, &dest, &opts()).unwrap_err().to_string();
    assert!(err.contains("one.gz") && err.contains("expected 9fb629c4189551a2d022fa330f9573f3"), "{err}");
    assert!(!dest.exists() && !dir.path().join("one.gz.part").exists());
}

#[test]
fn a_404_mirror_falls_through_to_the_next() {
    let server = Server::start(mnist_files("good"), None);
    let dir = tempfile::tempdir().unwrap();
    let source = DatasetSource::new(DatasetKind::Mnist, Some(&[server.base("gone"), server.base("good")])).unwrap();
    download::fetch(&source, dir.path(), &opts()).unwrap();
    let log = server.requests();
    assert_eq!(
        log.iter().filter(|(p, _)| p.starts_with("/gone/")).count(),
        4,
        "each file tried the first mirror once (404 is final)"
    );
    assert_eq!(log.iter().filter(|(p, _)| p.starts_with("/good/")).count(), 4);
    // Every mirror failing names the file and each mirror's reason.
    let empty = tempfile::tempdir().unwrap();
    let source = DatasetSource::new(DatasetKind::Mnist, Some(&[server.base("gone")])).unwrap();
    let err = download::fetch(&source, empty.path(), &opts()).unwrap_err().to_string();
    assert!(err.contains("every mirror") && err.contains("HTTP 404") && err.contains(".gz"), "{err}");
    // A mirror that cannot be reached is retried, and named once with its last reason (it was
    // repeated per attempt, with the URL twice each time).
    let file = RemoteFile {
        name: "x.gz".into(),
        urls: vec!["http://127.0.0.1:9/x.gz".into(), server.base("gone") + "x.gz"],
        md5: None,
        max_bytes: 1 << 20,
    };
    let err = download::fetch_file(&file, &empty.path().join("x.gz"), &opts()).unwrap_err().to_string();
    assert_eq!(err.matches("127.0.0.1:9").count(), 1, "{err}");
    assert!(err.contains("(3 attempts)") && err.lines().count() == 3, "{err}");
}

#[test]
fn present_data_touches_no_network() {
    // The shared copy is a complete data directory: nothing is requested, not even a connection.
    let source =
        DatasetSource::new(DatasetKind::FashionMnist, Some(&["http://127.0.0.1:9/unused/".to_string()])).unwrap();
    let got = download::fetch(&source, &datasets(), &opts()).unwrap();
    assert_eq!(got, Fetched::AlreadyPresent(datasets().join("fashion-mnist")));
    // A config without data.path reads $SAMIX_DATA (here the shared copy) and trains offline.
    let tmp = tempfile::tempdir().unwrap();
    let cfg = tiny_fashion_config(200, 100, 1, r#"policy = "none""#)
        .lines()
        .filter(|l| !l.starts_with("path ="))
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(tmp.path().join("c.toml"), cfg).unwrap();
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_samix"))
        .args(["train", "--config", "c.toml", "--out", "run", "--device", "cpu"])
        .env("SAMIX_DATA", datasets())
        .current_dir(tmp.path())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(!String::from_utf8_lossy(&o.stderr).contains("downloading"));
    let resolved = std::fs::read_to_string(tmp.path().join("run/config.toml")).unwrap();
    assert!(resolved.contains("fashion-mnist"), "the run records where the data was: {resolved}");
}

#[test]
fn cli_download_command() {
    let server = Server::start(mnist_files("m"), None);
    let dir = tempfile::tempdir().unwrap();
    let run = || {
        std::process::Command::new(env!("CARGO_BIN_EXE_samix"))
            .args(["data", "download", "mnist", "--to", dir.path().to_str().unwrap(), "--mirror", &server.base("m")])
            .output()
            .unwrap()
    };
    let o = run();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stdout).contains("downloaded and verified"));
    let o = run();
    assert!(String::from_utf8_lossy(&o.stdout).contains("already present"));
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_samix"))
        .args(["data", "download", "imagenet"])
        .output()
        .unwrap();
    assert!(!o.status.success() && !String::from_utf8_lossy(&o.stderr).contains("panicked"));
}

#[test]
fn zip_datasets_are_extracted_into_place() {
    // A two-class Tiny-ImageNet-200 in the official layout, zipped, served, fetched, unpacked.
    let (train, _) = samix::data::cifar::load(&cifar100_archive(), DatasetKind::Cifar100, false).unwrap();
    let src = tempfile::tempdir().unwrap();
    let root = src.path().join("tiny-imagenet-200");
    let save = |i: usize, path: std::path::PathBuf| {
        let img = train.load(i).unwrap();
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let rgb = image::RgbImage::from_fn(32, 32, |x, y| {
            image::Rgb([0, 1, 2].map(|c| img.pixel(c, y as usize, x as usize)))
        });
        image::DynamicImage::ImageRgb8(rgb).save_with_format(&path, image::ImageFormat::Jpeg).unwrap();
    };
    std::fs::create_dir_all(&root).unwrap();
    std::fs::write(root.join("wnids.txt"), "n01\nn02\n").unwrap();
    for (k, wnid) in ["n01", "n02"].iter().enumerate() {
        save(k, root.join("train").join(wnid).join("images").join(format!("{wnid}_0.JPEG")));
    }
    save(5, root.join("val/images/val_0.JPEG"));
    std::fs::write(root.join("val/val_annotations.txt"), "val_0.JPEG\tn02\t0\t0\t8\t8\n").unwrap();
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let file_opts = zip::write::SimpleFileOptions::default();
    for entry in walk(&root) {
        let rel = entry.strip_prefix(src.path()).unwrap().to_string_lossy().replace('\\', "/");
        zip.start_file(rel, file_opts).unwrap();
        zip.write_all(&std::fs::read(&entry).unwrap()).unwrap();
    }
    let bytes = zip.finish().unwrap().into_inner();
    let server = Server::start(HashMap::from([("/t/tiny-imagenet-200.zip".to_string(), bytes)]), None);
    let dir = tempfile::tempdir().unwrap();
    let mut source = DatasetSource::new(DatasetKind::TinyImagenet, Some(&[server.base("t")])).unwrap();
    source.files[0].md5 = None; // our zip, not the official one
    assert_eq!(
        download::fetch(&source, dir.path(), &opts()).unwrap(),
        Fetched::Downloaded(dir.path().join("tiny-imagenet-200"))
    );
    let (tr, va) = samix::data::folder::load_tiny_imagenet(&dir.path().join("tiny-imagenet-200")).unwrap();
    use samix::data::Dataset;
    assert_eq!((tr.len(), va.len(), va.label(0)), (2, 1, 1));
    assert!(!dir.path().join("tiny-imagenet-200.zip").exists(), "the archive is removed after extraction");
    // The official entry pins the archive's md5: a different zip is refused and nothing stays.
    let strict = DatasetSource::new(DatasetKind::TinyImagenet, Some(&[server.base("t")])).unwrap();
    let other = tempfile::tempdir().unwrap();
    let err = download::fetch(&strict, other.path(), &opts()).unwrap_err().to_string();
    assert!(err.contains("90528d7ca1a48142e341f4ef8d21d0de"), "{err}");
    assert_eq!(std::fs::read_dir(other.path()).unwrap().count(), 0);
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out.sort();
    out
}

#[test]
fn a_failed_download_removes_only_what_it_created() {
    // Three good MNIST files already in place, the fourth missing from every mirror: the call
    // fails and the three files stay (they were there before it).
    let mut files = mnist_files("m");
    let missing = files.keys().find(|k| k.contains("t10k-labels")).unwrap().clone();
    files.remove(&missing);
    let server = Server::start(files, None);
    let dir = tempfile::tempdir().unwrap();
    let mnist_dir = dir.path().join("mnist");
    std::fs::create_dir_all(&mnist_dir).unwrap();
    let mut kept = Vec::new();
    for entry in std::fs::read_dir(mnist()).unwrap() {
        let p = entry.unwrap().path();
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        if !missing.ends_with(&name) {
            std::fs::copy(&p, mnist_dir.join(&name)).unwrap();
            kept.push(name);
        }
    }
    assert_eq!(kept.len(), 3);
    let source = DatasetSource::new(DatasetKind::Mnist, Some(&[server.base("m")])).unwrap();
    assert!(download::fetch(&source, dir.path(), &opts()).is_err());
    for name in &kept {
        assert!(mnist_dir.join(name).is_file(), "{name} was there before the call and must stay");
    }
    // An existing tiny-imagenet-200/ (not a valid dataset: the user's files) and no network: the
    // failed call leaves the folder and everything in it.
    let target = dir.path().join("tiny-imagenet-200");
    std::fs::create_dir_all(&target).unwrap();
    std::fs::write(target.join("notes.txt"), "mine").unwrap();
    let offline =
        DatasetSource::new(DatasetKind::TinyImagenet, Some(&["http://127.0.0.1:9/none/".to_string()])).unwrap();
    assert!(download::fetch(&offline, dir.path(), &opts()).is_err());
    assert_eq!(std::fs::read_to_string(target.join("notes.txt")).unwrap(), "mine");
}

/// A one-connection-at-a-time HTTP server whose every answer `respond` writes from the request's
/// `Range` start (if any).
fn raw_server(respond: impl Fn(Option<u64>) -> Vec<u8> + Send + 'static) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let Some((_, range)) = read_request(&stream) else { continue };
            let _ = stream.write_all(&respond(range));
        }
    });
    port
}

fn http_ok(body: &[u8]) -> Vec<u8> {
    let mut r = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len()).into_bytes();
    r.extend_from_slice(body);
    r
}

#[test]
fn a_refused_range_restarts_the_download_unless_the_file_is_complete() {
    // A `.part` of 100 bytes is left from before; the server answers the Range request with 416
    // and its real size. That is not "complete": the file is fetched again from the start.
    let body: Vec<u8> = (0..5000u32).map(|i| (i * 7 % 251) as u8).collect();
    let full = body.clone();
    let port = raw_server(move |range| {
        match range {
        Some(_) => format!(
            "HTTP/1.1 416 Range Not Satisfiable\r\nContent-Range: bytes */{}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            full.len()
        )
        .into_bytes(),
        None => http_ok(&full),
    }
    });
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("f.bin");
    std::fs::write(dir.path().join("f.bin.part"), &body[..100]).unwrap();
    let file = RemoteFile {
        name: "f.bin".into(),
        urls: vec![format!("http://127.0.0.1:{port}/f.bin")],
        md5: None,
        max_bytes: 1 << 20,
    };
    download::fetch_file(&file, &dest, &opts()).unwrap();
    assert_eq!(std::fs::read(&dest).unwrap(), body, "the whole file, not the 100 bytes of the old .part");

    // A 416 whose size equals the .part is a finished download.
    let dest = dir.path().join("g.bin");
    std::fs::write(dir.path().join("g.bin.part"), &body).unwrap();
    let file = RemoteFile { name: "g.bin".into(), ..file };
    download::fetch_file(&file, &dest, &opts()).unwrap();
    assert_eq!(std::fs::read(&dest).unwrap(), body);
}

#[test]
fn a_download_larger_than_the_file_can_be_is_refused() {
    let body = vec![7u8; 50_000];
    let announced = body.clone();
    let port = raw_server(move |_| http_ok(&announced));
    // A server that announces no length and streams on is cut off at the bound too.
    let streamed = body.clone();
    let port_unannounced = raw_server(move |_| {
        let mut r = b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n".to_vec();
        r.extend_from_slice(&streamed);
        r
    });
    let dir = tempfile::tempdir().unwrap();
    for port in [port, port_unannounced] {
        let dest = dir.path().join("big.bin");
        let file = RemoteFile {
            name: "big.bin".into(),
            urls: vec![format!("http://127.0.0.1:{port}/big.bin")],
            md5: None,
            max_bytes: 10_000,
        };
        let err = download::fetch_file(&file, &dest, &opts()).unwrap_err().to_string();
        assert!(err.contains("more than the 10000"), "{err}");
        assert!(!dest.exists() && !dir.path().join("big.bin.part").exists());
    }
}

/// A mirror that takes the connection and never answers is given up after one timeout (three
/// attempts once made 184 s of silence per file, ending in "Network Error"), named with the reason,
/// and the next mirror is tried (issue 24, R6).
#[test]
fn a_silent_mirror_is_left_after_one_timeout() {
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    // Accepts every connection and holds it open without a byte, until the test ends.
    let held = Arc::new(Mutex::new(Vec::new()));
    let keep = held.clone();
    std::thread::spawn(move || {
        for stream in silent.incoming().flatten() {
            keep.lock().unwrap().push(stream);
        }
    });
    let server = Server::start(mnist_files("good"), None);
    let dir = tempfile::tempdir().unwrap();
    let file = RemoteFile {
        name: "x.gz".into(),
        urls: vec![format!("http://127.0.0.1:{port}/x.gz"), server.base("gone") + "x.gz"],
        md5: None,
        max_bytes: 1 << 20,
    };
    let quick = DownloadOptions { timeout: std::time::Duration::from_secs(1), ..Default::default() };
    let err = download::fetch_file(&file, &dir.path().join("x.gz"), &quick).unwrap_err().to_string();
    let line = err.lines().find(|l| l.contains(&format!("127.0.0.1:{port}"))).unwrap_or_default();
    assert!(line.contains("no answer within 1 s") && !line.contains("attempts"), "{err}");
    assert_eq!(held.lock().unwrap().len(), 1, "the silent mirror was asked more than once: {err}");
    assert!(err.contains("HTTP 404"), "the next mirror was not tried: {err}");
}

/// A file already in the data folder that the loaders find corrupt (its md5 differs from the
/// official one; the download source knows no md5 of its own for it) is fetched again, not kept
/// (issue 24 R13; before: it was kept and every call failed on its md5).
#[test]
fn a_corrupt_file_in_the_data_folder_is_fetched_again() {
    let server = Server::start(mnist_files("a"), None);
    let dir = tempfile::tempdir().unwrap();
    let source = DatasetSource::new(DatasetKind::Mnist, Some(&[server.base("a")])).unwrap();
    download::fetch(&source, dir.path(), &opts()).unwrap();
    let path = dir.path().join("mnist/t10k-images-idx3-ubyte.gz");
    let good = std::fs::read(&path).unwrap();
    let (_, mut raw) = samix::data::idx::read_idx_file(&mnist(), "t10k-images-idx3-ubyte").unwrap();
    raw[5000] ^= 0x55;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&raw).unwrap();
    std::fs::write(&path, gz.finish().unwrap()).unwrap();
    let fetched = download::fetch(&source, dir.path(), &opts()).unwrap();
    assert_eq!(fetched, Fetched::Downloaded(dir.path().join("mnist")));
    assert_eq!(std::fs::read(&path).unwrap(), good, "the corrupt file was replaced by the official one");
    let again: Vec<_> = server.requests().into_iter().filter(|(p, _)| p.contains("t10k-images")).collect();
    assert_eq!(again.len(), 2, "fetched once, then again: {again:?}");
}
