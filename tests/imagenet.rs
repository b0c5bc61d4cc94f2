//! The ImageNet layout (issue 25): classes from `train/<wnid>/`, validation in class folders or
//! flat with a label list (class indices or wnids), and each way the list can be wrong named.
use samix::data::imagenet::load_imagenet;
use samix::data::Dataset;
use std::path::Path;

const WNIDS: [&str; 3] = ["n01440764", "n01443537", "n01484850"];

/// `train/<wnid>/` with two (empty: listing decodes nothing) images each, and a flat `val/` of
/// four images.
fn layout(root: &Path) {
    for (c, wnid) in WNIDS.iter().enumerate() {
        let dir = root.join("train").join(wnid);
        std::fs::create_dir_all(&dir).unwrap();
        for i in 0..2 {
            std::fs::write(dir.join(format!("{wnid}_{c}{i}.JPEG")), b"").unwrap();
        }
    }
    std::fs::create_dir_all(root.join("val")).unwrap();
    for i in 1..=4 {
        std::fs::write(root.join(format!("val/ILSVRC2012_val_0000000{i}.JPEG")), b"").unwrap();
    }
}

fn error(root: &Path) -> String {
    load_imagenet(root).map(|_| ()).unwrap_err().to_string()
}

#[test]
fn a_flat_validation_folder_takes_its_labels_from_the_list() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    layout(root);
    // No list: the message says where one is looked for and what the devkit's file needs.
    let err = error(root);
    assert!(err.contains("val.txt") && err.contains("meta.mat"), "{err}");
    // The reference's format (index) and wnids mixed; a `val/` prefix is allowed.
    let list = "ILSVRC2012_val_00000001.JPEG 2\nval/ILSVRC2012_val_00000002.JPEG n01440764\n\
                ILSVRC2012_val_00000003.JPEG 1\nILSVRC2012_val_00000004.JPEG n01484850\n";
    std::fs::create_dir_all(root.join("meta")).unwrap();
    std::fs::write(root.join("meta/val.txt"), list).unwrap();
    let (train, val) = load_imagenet(root).unwrap();
    assert_eq!((train.len(), val.len(), train.info().num_classes), (6, 4, 3));
    assert_eq!(train.info().class_names, WNIDS.map(String::from).to_vec());
    assert_eq!((0..4).map(|i| val.label(i)).collect::<Vec<_>>(), vec![2, 0, 1, 2]);
    assert_eq!((0..6).map(|i| train.label(i)).collect::<Vec<_>>(), vec![0, 0, 1, 1, 2, 2]);
    assert_eq!(samix::data::verify::detect(root).unwrap(), samix::data::DatasetKind::Imagenet);

    // Each way the list can be wrong is named with its line or file.
    let bad = |text: &str, want: &str| {
        std::fs::write(root.join("meta/val.txt"), text).unwrap();
        let err = error(root);
        assert!(err.contains(want), "{want}: {err}");
    };
    bad(&list.replace(" 2\n", " 3\n"), "line 1: class index 3 is outside 0..3");
    bad(&list.replace("n01440764", "n99999999"), "line 2: `n99999999` is not a class");
    bad(&list.replace(" 1\n", "\n"), "line 3: expected");
    bad(&format!("{list}ILSVRC2012_val_00000001.JPEG 0\n"), "listed twice");
    bad(&list.replace("ILSVRC2012_val_00000004.JPEG n01484850\n", ""), "ILSVRC2012_val_00000004.JPEG");
    bad(&format!("{list}ILSVRC2012_val_00000009.JPEG 0\n"), "1 listed images are not in val/");
}

#[test]
fn a_validation_folder_of_classes_is_read_as_an_image_folder() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    layout(root);
    for f in std::fs::read_dir(root.join("val")).unwrap() {
        std::fs::remove_file(f.unwrap().path()).unwrap();
    }
    std::fs::create_dir_all(root.join("val/n01443537")).unwrap();
    std::fs::write(root.join("val/n01443537/a.JPEG"), b"").unwrap();
    let (_, val) = load_imagenet(root).unwrap();
    assert_eq!((val.len(), val.label(0)), (1, 1));
    std::fs::create_dir_all(root.join("val/n00000000")).unwrap();
    std::fs::write(root.join("val/n00000000/b.JPEG"), b"").unwrap();
    assert!(error(root).contains("n00000000"), "{}", error(root));
}
