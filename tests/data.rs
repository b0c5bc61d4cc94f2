//! Dataset readers on the real files and their validation errors: CIFAR-100 (archive and folder),
//! MNIST/Fashion-MNIST IDX, image folders and Tiny-ImageNet layouts, checksums, decompression
//! bombs. Transforms and the loader: `tests/loader.rs`.
mod common;
use common::*;
use samix::data::{cifar, folder, idx, verify, Dataset, DatasetKind, RawImage};
use samix::Error;

fn extract_cifar100(dir: &std::path::Path) -> std::path::PathBuf {
    let f = std::fs::File::open(cifar100_archive()).unwrap();
    tar::Archive::new(flate2::read::GzDecoder::new(f)).unpack(dir).unwrap();
    dir.join("cifar-100-binary")
}

#[test]
fn cifar100_archive_has_official_counts_and_labels() {
    let (train, test) = cifar::load(&cifar100_archive(), DatasetKind::Cifar100, true).unwrap();
    assert_eq!((train.len(), test.len()), (50_000, 10_000));
    assert_eq!(train.labels()[..10], [19, 29, 0, 11, 1, 86, 90, 28, 23, 31]);
    assert_eq!(test.labels()[..10], [49, 33, 72, 51, 71, 92, 15, 14, 23, 0]);
    assert_eq!(train.info().class_names[19], "cattle");
    assert_eq!(train.info().num_classes, 100);
    let mut counts = [0usize; 100];
    train.labels().iter().for_each(|&l| counts[l as usize] += 1);
    assert!(counts.iter().all(|&c| c == 500), "CIFAR-100 has 500 training images per class");
    let img = train.load(0).unwrap();
    assert_eq!((img.channels, img.height, img.width), (3, 32, 32));
}

#[test]
fn cifar100_folder_equals_archive_and_bad_files_are_named() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = extract_cifar100(tmp.path());
    let (a, _) = cifar::load(&cifar100_archive(), DatasetKind::Cifar100, false).unwrap();
    for path in [tmp.path().to_path_buf(), dir.clone()] {
        let (b, _) = cifar::load(&path, DatasetKind::Cifar100, true).unwrap();
        assert_eq!(a.labels(), b.labels());
        assert_eq!(a.load(123).unwrap(), b.load(123).unwrap());
    }
    // One flipped pixel byte: sizes still fine, the md5 check names the file.
    let test_bin = dir.join("test.bin");
    let mut bytes = std::fs::read(&test_bin).unwrap();
    bytes[5000] ^= 0xff;
    std::fs::write(&test_bin, &bytes).unwrap();
    let err = cifar::load(&dir, DatasetKind::Cifar100, true).unwrap_err().to_string();
    assert!(err.contains("test.bin") && err.contains("md5"), "{err}");
    assert!(cifar::load(&dir, DatasetKind::Cifar100, false).is_ok(), "checksums can be turned off");
    // A label byte out of range.
    bytes[5000] ^= 0xff;
    bytes[1] = 100;
    std::fs::write(&test_bin, &bytes).unwrap();
    let err = cifar::load(&dir, DatasetKind::Cifar100, false).unwrap_err().to_string();
    assert!(err.contains("test.bin") && err.contains("label 100 out of range"), "{err}");
    // Truncated.
    std::fs::write(&test_bin, &bytes[..bytes.len() - 10]).unwrap();
    let err = cifar::load(&dir, DatasetKind::Cifar100, false).unwrap_err();
    assert!(matches!(err, Error::Data { .. }));
    assert!(err.to_string().contains("test.bin") && err.to_string().contains("truncated"), "{err}");
    // Missing file.
    std::fs::remove_file(&test_bin).unwrap();
    let err = cifar::load(&dir, DatasetKind::Cifar100, false).unwrap_err().to_string();
    assert!(err.contains("missing `test.bin`"), "{err}");
}

#[test]
fn truncated_cifar_archive_is_an_error_not_a_panic() {
    let tmp = tempfile::tempdir().unwrap();
    let bytes = std::fs::read(cifar100_archive()).unwrap();
    let cut = tmp.path().join("cut.tar.gz");
    std::fs::write(&cut, &bytes[..bytes.len() / 3]).unwrap();
    let err = cifar::load(&cut, DatasetKind::Cifar100, true).unwrap_err().to_string();
    assert!(err.contains("cut.tar.gz"), "{err}");
}

#[test]
fn mnist_and_fashion_idx_load_gz_and_raw() {
    let (train, test) = idx::load(&mnist(), DatasetKind::Mnist, true).unwrap();
    assert_eq!((train.len(), test.len()), (60_000, 10_000));
    assert_eq!(train.labels()[..10], [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]);
    assert_eq!(test.labels()[..10], [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]);
    let (ftrain, ftest) = idx::load(&fashion(), DatasetKind::FashionMnist, true).unwrap();
    assert_eq!(ftrain.labels()[..10], [9, 0, 0, 3, 0, 2, 7, 2, 5, 5]);
    assert_eq!(ftest.labels()[..10], [9, 2, 1, 1, 6, 1, 4, 6, 5, 7]);
    assert_eq!(ftrain.info().class_names[9], "Ankle boot");
    let img = ftrain.load(0).unwrap();
    assert_eq!((img.channels, img.height, img.width), (1, 28, 28));

    // The same files uncompressed give the same data.
    let tmp = tempfile::tempdir().unwrap();
    for (name, _) in idx::FILES {
        let (_, bytes) = idx::read_idx_file(&fashion(), name).unwrap();
        std::fs::write(tmp.path().join(name), bytes).unwrap();
    }
    let (raw_train, _) = idx::load(tmp.path(), DatasetKind::FashionMnist, true).unwrap();
    assert_eq!(raw_train.labels(), ftrain.labels());
    assert_eq!(raw_train.load(59_999).unwrap(), ftrain.load(59_999).unwrap());

    // Checksums tell MNIST from Fashion-MNIST: loading Fashion files as MNIST fails the md5 check.
    let err = idx::load(tmp.path(), DatasetKind::Mnist, true).unwrap_err().to_string();
    assert!(err.contains("md5"), "{err}");
}

#[test]
fn idx_errors_name_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    for (name, _) in idx::FILES {
        let (_, bytes) = idx::read_idx_file(&mnist(), name).unwrap();
        std::fs::write(tmp.path().join(name), bytes).unwrap();
    }
    let labels = tmp.path().join("t10k-labels-idx1-ubyte");
    let mut bytes = std::fs::read(&labels).unwrap();
    std::fs::write(&labels, &bytes[..bytes.len() - 1]).unwrap();
    let err = idx::load(tmp.path(), DatasetKind::Mnist, false).unwrap_err().to_string();
    assert!(err.contains("t10k-labels-idx1-ubyte") && err.contains("truncated"), "{err}");
    bytes[3] = 0x03; // image magic in a label file
    std::fs::write(&labels, &bytes).unwrap();
    let err = idx::load(tmp.path(), DatasetKind::Mnist, false).unwrap_err().to_string();
    assert!(err.contains("magic"), "{err}");
    bytes[3] = 0x01;
    bytes[8] = 10;
    std::fs::write(&labels, &bytes).unwrap();
    let err = idx::load(tmp.path(), DatasetKind::Mnist, false).unwrap_err().to_string();
    assert!(err.contains("label 10"), "{err}");
    // A gzip file with garbage.
    std::fs::remove_file(tmp.path().join("t10k-images-idx3-ubyte")).unwrap();
    std::fs::write(tmp.path().join("t10k-images-idx3-ubyte.gz"), [0x1f, 0x8b, 8, 0, 1, 2, 3]).unwrap();
    let err = idx::load(tmp.path(), DatasetKind::Mnist, false).unwrap_err().to_string();
    assert!(err.contains("t10k-images-idx3-ubyte.gz") && err.contains("gzip"), "{err}");
}

fn save_png(img: &RawImage, path: &std::path::Path) {
    let (h, w) = (img.height, img.width);
    let rgb = image::RgbImage::from_fn(w as u32, h as u32, |x, y| {
        image::Rgb([0, 1, 2].map(|c| img.pixel(c, y as usize, x as usize)))
    });
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    rgb.save(path).unwrap();
}

#[test]
fn image_folder_and_tiny_imagenet_layouts() {
    let (train, _) = cifar::load(&cifar100_archive(), DatasetKind::Cifar100, false).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("folder");
    // classes "cattle" (train idx 0) and "dinosaur" (idx 1), two images each per split
    for (split, offset) in [("train", 0), ("val", 2)] {
        for (class, base) in [("cattle", 0), ("dinosaur", 1)] {
            for k in 0..2 {
                save_png(
                    &train.load(base + 10 * (k + offset)).unwrap(),
                    &root.join(split).join(class).join(format!("{k}.png")),
                );
            }
        }
    }
    let (tr, va) = folder::load_image_folder(&root).unwrap();
    assert_eq!((tr.len(), va.len()), (4, 4));
    assert_eq!(tr.info().class_names, ["cattle", "dinosaur"]);
    assert_eq!((0..4).map(|i| tr.label(i)).collect::<Vec<_>>(), [0, 0, 1, 1]);
    assert_eq!(tr.load(2).unwrap(), train.load(1).unwrap(), "PNG round trip is lossless");

    std::fs::create_dir_all(root.join("val").join("zebra")).unwrap();
    save_png(&train.load(5).unwrap(), &root.join("val").join("zebra").join("z.png"));
    let err = folder::load_image_folder(&root).err().unwrap().to_string();
    assert!(err.contains("zebra") && err.contains("unknown class"), "{err}");

    // An unreadable image is reported with its path when loaded.
    std::fs::write(root.join("train").join("cattle").join("bad.png"), b"not a png").unwrap();
    std::fs::remove_dir_all(root.join("val").join("zebra")).unwrap();
    let (tr, _) = folder::load_image_folder(&root).unwrap();
    let bad = (0..tr.len()).find(|&i| tr.items()[i].0.ends_with("bad.png")).unwrap();
    let err = tr.load(bad).unwrap_err().to_string();
    assert!(err.contains("bad.png") && err.contains("cannot decode"), "{err}");

    // Tiny-ImageNet: train/<wnid>/images, val/images + val_annotations.txt, wnids.txt.
    let tiny = tmp.path().join("tiny");
    std::fs::create_dir_all(&tiny).unwrap();
    std::fs::write(tiny.join("wnids.txt"), "n01\nn02\n").unwrap();
    for (wnid, base) in [("n01", 0), ("n02", 1)] {
        save_png(
            &train.load(base).unwrap(),
            &tiny.join("train").join(wnid).join("images").join(format!("{wnid}_0.JPEG.png")),
        );
    }
    save_png(&train.load(20).unwrap(), &tiny.join("val/images/val_0.png"));
    save_png(&train.load(21).unwrap(), &tiny.join("val/images/val_1.png"));
    std::fs::write(
        tiny.join("val/val_annotations.txt"),
        "val_0.png\tn02\t0\t0\t10\t10\nval_1.png\tn01\t0\t0\t10\t10\n",
    )
    .unwrap();
    let (tr, va) = folder::load_tiny_imagenet(&tiny).unwrap();
    assert_eq!((tr.len(), va.len()), (2, 2));
    assert_eq!((va.label(0), va.label(1)), (1, 0));
    std::fs::write(tiny.join("val/val_annotations.txt"), "val_0.png\tn99\t0\n").unwrap();
    let err = folder::load_tiny_imagenet(&tiny).err().unwrap().to_string();
    assert!(err.contains("val_annotations.txt") && err.contains("line 1") && err.contains("n99"), "{err}");
}

#[test]
fn verify_reports_known_checksums() {
    let r = verify::verify(&cifar100_archive()).unwrap();
    assert_eq!(r.dataset, "cifar100");
    assert_eq!((r.train_records, r.test_records), (50_000, 10_000));
    assert_eq!(r.files.iter().filter(|f| f.matches() == Some(true)).count(), 2);
    let r = verify::verify(&fashion()).unwrap();
    assert_eq!(r.dataset, "fashion_mnist");
    assert!(r.all_match() && r.files.len() == 4);
    let r = verify::verify(&mnist()).unwrap();
    assert_eq!(r.dataset, "mnist");
    assert!(r.all_match());
}

/// A PNG whose header claims 23170² pixels (1 bit each: a few KB on disk) is refused from its
/// header, naming the file and the budget, before any pixel is decoded; an ordinary image still
/// decodes (issue 24, R10: such a file once took 3.6–3.9 GB and 19 s in `predict`).
#[test]
fn a_decompression_bomb_is_refused_from_its_header() {
    fn chunk(kind: &[u8], data: &[u8]) -> Vec<u8> {
        let mut crc = flate2::Crc::new();
        crc.update(kind);
        crc.update(data);
        let mut out = (data.len() as u32).to_be_bytes().to_vec();
        out.extend_from_slice(kind);
        out.extend_from_slice(data);
        out.extend_from_slice(&crc.sum().to_be_bytes());
        out
    }
    let side: u32 = 23170;
    let mut ihdr = side.to_be_bytes().to_vec();
    ihdr.extend_from_slice(&side.to_be_bytes());
    ihdr.extend_from_slice(&[1, 0, 0, 0, 0]); // 1-bit greyscale, deflate, no interlace
                                              // A little of the (all-zero) image data, as a bomb would start.
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
    std::io::Write::write_all(&mut z, &vec![0u8; 1 << 16]).unwrap();
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    png.extend(chunk(b"IHDR", &ihdr));
    png.extend(chunk(b"IDAT", &z.finish().unwrap()));
    png.extend(chunk(b"IEND", &[]));
    let dir = tempfile::tempdir().unwrap();
    let bomb = dir.path().join("bomb.png");
    std::fs::write(&bomb, &png).unwrap();
    let err = folder::decode_rgb(&bomb).unwrap_err().to_string();
    assert!(err.contains("bomb.png") && err.contains("23170×23170") && err.contains("MiB"), "{err}");
    let small = dir.path().join("small.png");
    image::RgbImage::from_pixel(40, 30, image::Rgb([1, 2, 3])).save(&small).unwrap();
    let raw = folder::decode_rgb(&small).unwrap();
    assert_eq!((raw.channels, raw.height, raw.width), (3, 30, 40));
}
