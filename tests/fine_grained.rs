//! CUB-200-2011 and FGVC-Aircraft in their official layouts (issue 25), on small synthetic
//! copies of those layouts: the official split and labels, `data verify` recognising each, a run
//! training on one, and every bad line named with its file and number.
mod common;
use samix::config::TrainConfig;
use samix::data::fine_grained::{load_aircraft, load_cub200};
use samix::data::{verify, Dataset};
use std::path::Path;

fn jpeg(path: &Path, shade: u8) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let img = image::RgbImage::from_fn(12, 10, |x, y| image::Rgb([shade, (x * 20) as u8, (y * 25) as u8]));
    img.save(path).unwrap();
}

fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

/// CUB's layout under `root/CUB_200_2011`: 3 classes, 4 images each, ids 1..=12, the first
/// two of each class for training.
fn cub(root: &Path) -> std::path::PathBuf {
    let dir = root.join("CUB_200_2011");
    let classes = ["001.Black_footed_Albatross", "002.Laysan_Albatross", "003.Sooty_Albatross"];
    let (mut images, mut labels, mut split) = (String::new(), String::new(), String::new());
    for (c, class) in classes.iter().enumerate() {
        for k in 0..4 {
            let id = c * 4 + k + 1;
            let rel = format!("{class}/{class}_{k}.jpg");
            jpeg(&dir.join("images").join(&rel), (id * 20) as u8);
            images += &format!("{id} {rel}\n");
            labels += &format!("{id} {}\n", c + 1);
            split += &format!("{id} {}\n", u8::from(k < 2));
        }
    }
    let class_list: String = classes.iter().enumerate().map(|(i, c)| format!("{} {c}\n", i + 1)).collect();
    write(&dir.join("classes.txt"), &class_list);
    write(&dir.join("images.txt"), &images);
    write(&dir.join("image_class_labels.txt"), &labels);
    write(&dir.join("train_test_split.txt"), &split);
    dir
}

/// Aircraft's layout under `root/fgvc-aircraft-2013b/data`: 2 variants (one with a slash).
fn aircraft(root: &Path) -> std::path::PathBuf {
    let dir = root.join("fgvc-aircraft-2013b").join("data");
    write(&dir.join("variants.txt"), "707-320\nF/A-18\n");
    write(&dir.join("images_variant_trainval.txt"), "0034309 707-320\n0041234 F/A-18\n1234567 707-320\n");
    write(&dir.join("images_variant_test.txt"), "2222222 F/A-18\n");
    for id in ["0034309", "0041234", "1234567", "2222222"] {
        jpeg(&dir.join("images").join(format!("{id}.jpg")), id.as_bytes()[3]);
    }
    dir
}

#[test]
fn cub200_follows_the_official_split_and_labels() {
    let tmp = tempfile::tempdir().unwrap();
    cub(tmp.path());
    let (train, test) = load_cub200(tmp.path()).unwrap();
    assert_eq!((train.len(), test.len(), train.info().num_classes), (6, 6, 3));
    let labels: Vec<i64> = (0..6).map(|i| train.label(i)).collect();
    assert_eq!(labels, [0, 0, 1, 1, 2, 2], "1-based classes become 0-based, in images.txt order");
    assert_eq!(train.info().class_names[2], "003.Sooty_Albatross");
    assert!(train.items()[3].0.ends_with("002.Laysan_Albatross/002.Laysan_Albatross_1.jpg"));
    assert!(test.items()[0].0.ends_with("001.Black_footed_Albatross_2.jpg"));
    let img = test.load(5).unwrap();
    assert_eq!((img.channels, img.height, img.width), (3, 10, 12));
    let r = verify::verify(tmp.path()).unwrap();
    assert_eq!((r.dataset.as_str(), r.train_records, r.test_records), ("cub200", 6, 6));
}

#[test]
fn aircraft_trains_on_trainval_variants_and_tests_on_test() {
    let tmp = tempfile::tempdir().unwrap();
    aircraft(tmp.path());
    for root in [tmp.path().to_path_buf(), tmp.path().join("fgvc-aircraft-2013b")] {
        let (train, test) = load_aircraft(&root).unwrap();
        assert_eq!((train.len(), test.len(), train.info().num_classes), (3, 1, 2));
        assert_eq!((0..3).map(|i| train.label(i)).collect::<Vec<_>>(), [0, 1, 0]);
        assert_eq!(test.label(0), 1, "F/A-18 is the second line of variants.txt");
    }
    assert_eq!(verify::verify(tmp.path()).unwrap().dataset, "aircraft");
}

#[test]
fn a_run_trains_on_cub200() {
    let tmp = tempfile::tempdir().unwrap();
    cub(tmp.path());
    let text = format!(
        "seed = 1\n[data]\ndataset = \"cub200\"\npath = \"{}\"\nworkers = 1\n[data.augment]\nimage_size = 8\n\
         [model]\narch = \"resnet18\"\nbase_width = 4\nblocks = [1, 1, 1, 1]\n[mix]\npolicy = \"none\"\n\
         [train]\nepochs = 1\nbatch_size = 2\nthreads = 1\n",
        tmp.path().display()
    );
    let cfg = TrainConfig::parse(&text, &[]).unwrap();
    let _rng = common::torch_rng_lock();
    let s = common::train_run(&cfg, &tmp.path().join("run"), false, false, None).unwrap();
    assert_eq!(s.epochs, 1);
}

#[test]
fn bad_lines_and_missing_images_are_named() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = cub(tmp.path());
    let err = |root: &Path| load_cub200(root).map(|_| ()).unwrap_err().to_string();
    std::fs::remove_file(dir.join("images/002.Laysan_Albatross/002.Laysan_Albatross_3.jpg")).unwrap();
    let e = err(tmp.path());
    assert!(e.contains("images.txt") && e.contains("line 8") && e.contains("does not exist"), "{e}");
    cub(tmp.path());
    write(&dir.join("image_class_labels.txt"), "1 1\n2 4\n");
    let e = err(tmp.path());
    assert!(e.contains("line 2") && e.contains("not in 1..=3"), "{e}");
    write(&dir.join("image_class_labels.txt"), "1 1\n");
    assert!(err(tmp.path()).contains("image 2 has no class"));
    cub(tmp.path());
    write(&dir.join("train_test_split.txt"), "1 0\n2 0\n3 0\n4 0\n5 1\n6 1\n7 1\n8 1\n9 1\n10 1\n11 1\n12 1\n");
    assert!(err(tmp.path()).contains("class `001.Black_footed_Albatross` has no training images"));
    let e = err(&tmp.path().join("elsewhere"));
    assert!(e.contains("not the CUB-200-2011 layout"), "{e}");

    let dir = aircraft(tmp.path());
    write(&dir.join("images_variant_test.txt"), "2222222 F/A-18\n3333333 Tu-134\n");
    let e = load_aircraft(tmp.path()).map(|_| ()).unwrap_err().to_string();
    assert!(e.contains("images_variant_test.txt") && e.contains("line 2") && e.contains("`Tu-134`"), "{e}");
}
