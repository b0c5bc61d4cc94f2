//! The image-folder scanner and decoder on an arbitrary small tree of files: the dataset opens
//! or gives an error naming a path, and every image it lists decodes, whole and through the
//! training pipeline's partial JPEG decoding (a random-resized crop), or gives an error — never
//! a panic.
#![no_main]
mod common;
use libfuzzer_sys::fuzz_target;
use rand::SeedableRng;
use samix::data::folder::{decode_rgb, load_image_folder};
use samix::data::transform::Pipeline;
use samix::data::AugmentConfig;

const SPLITS: [&str; 4] = ["train", "val", "test", "other"];
const CLASSES: [&str; 4] = ["a", "b", "c", ".hidden"];
const NAMES: [&str; 6] = ["0.png", "1.jpg", "2.jpeg", "3.PNG", "4.txt", "5"];

fuzz_target!(|data: &[u8]| {
    // Entries `<split/class/name byte><kind byte><length: u16 LE><content>`; kind picks a file,
    // a folder, or a file directly in the split.
    let root = common::scratch("folder").join("root");
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(&root).expect("root");
    let mut rest = data;
    let mut files = 0;
    while let [pick, kind, lo, hi, tail @ ..] = rest {
        let len = (u16::from_le_bytes([*lo, *hi]) as usize).min(tail.len());
        let (content, next) = tail.split_at(len);
        rest = next;
        let split = root.join(SPLITS[(*pick & 3) as usize]);
        let class = split.join(CLASSES[((*pick >> 2) & 3) as usize]);
        let name = NAMES[((*pick >> 4) as usize) % NAMES.len()];
        let path = match kind % 3 {
            0 => class.join(name),
            1 => class.clone(),
            _ => split.join(name),
        };
        if let Some(parent) = path.parent() {
            let _ = std::fs::create_dir_all(parent);
        }
        if kind % 3 == 1 {
            let _ = std::fs::create_dir_all(&path);
        } else {
            let _ = std::fs::write(&path, content);
        }
        files += 1;
        if files >= 32 {
            break;
        }
    }
    if let Ok((train, eval)) = load_image_folder(&root) {
        for (path, label) in train.items().iter().chain(eval.items()) {
            assert!(*label >= 0 && (*label as usize) < samix::data::Dataset::info(&train).num_classes);
            if let Ok(img) = decode_rgb(path) {
                assert_eq!(img.data.len(), img.channels * img.height * img.width);
            }
        }
        // A 4-pixel crop, so the small seeds' windows are DCT-downscaled too.
        let crop = AugmentConfig { image_size: Some(4), random_resized_crop: true, hflip: true, ..Default::default() };
        let pipeline = Pipeline::train(&crop, None, &[0.5], &[0.5]);
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(u64::from(data.first().copied().unwrap_or(0)));
        for index in 0..samix::data::Dataset::len(&train) {
            if let Ok(img) = pipeline.load_and_apply(&train, index, &mut rng) {
                assert_eq!((img.channels, img.height, img.width), (3, 4, 4));
            }
        }
    }
});
