//! JPEG decoding against PIL's (issue 25): baseline, progressive, 4:4:4, greyscale and CMYK
//! files written by the venv's Pillow are decoded by samix (`folder::decode_rgb`) to within one
//! grey level of Pillow's own RGB decode of the same bytes; a truncated file is refused, naming it.
mod common;
use samix::data::folder::decode_rgb;

/// Writes the test JPEGs into `dir` with Pillow, and beside each `<name>.rgb`: Pillow's decode
/// of it (`convert("RGB")`, HWC bytes).
const WRITE: &str = r#"
import sys, numpy as np
from PIL import Image
d = sys.argv[1]
yy, xx = np.mgrid[0:120, 0:160]
rng = np.random.default_rng(0)
noise = rng.normal(0, 18, (120, 160, 3))
img = np.stack([128 + 90 * np.sin(xx / 9.0), 128 + 90 * np.cos(yy / 7.0), (xx + 2 * yy) % 256], -1) + noise
im = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))
variants = {
    "baseline": (im, dict(quality=90)),
    "progressive": (im, dict(quality=85, progressive=True)),
    "sub444": (im, dict(quality=95, subsampling=0)),
    "grey": (im.convert("L"), dict(quality=90)),
    "cmyk": (im.convert("CMYK"), dict(quality=90)),
}
for name, (v, kw) in variants.items():
    path = f"{d}/{name}.jpg"
    v.save(path, **kw)
    open(f"{d}/{name}.rgb", "wb").write(np.asarray(Image.open(path).convert("RGB")).tobytes())
data = open(f"{d}/baseline.jpg", "rb").read()
open(f"{d}/truncated.jpg", "wb").write(data[: len(data) // 2])
"#;

#[test]
fn jpegs_decode_as_pillow_decodes_them() {
    let tmp = tempfile::tempdir().unwrap();
    common::venv_python(&[std::ffi::OsStr::new("-c"), WRITE.as_ref(), tmp.path().as_os_str()]);
    for name in ["baseline", "progressive", "sub444", "grey", "cmyk"] {
        let img = decode_rgb(&tmp.path().join(format!("{name}.jpg"))).unwrap_or_else(|e| panic!("{name}: {e}"));
        let pil = std::fs::read(tmp.path().join(format!("{name}.rgb"))).unwrap();
        assert_eq!((img.channels, img.height, img.width), (3, 120, 160), "{name}");
        let (h, w) = (img.height, img.width);
        let mut total = 0u64;
        let mut worst = 0u8;
        for y in 0..h {
            for x in 0..w {
                for c in 0..3 {
                    let d = img.pixel(c, y, x).abs_diff(pil[(y * w + x) * 3 + c]);
                    total += u64::from(d);
                    worst = worst.max(d);
                }
            }
        }
        let mean = total as f64 / (3 * h * w) as f64;
        assert!(mean < 1.0, "{name}: mean absolute difference from Pillow {mean:.3} (largest {worst})");
    }
    let truncated = tmp.path().join("truncated.jpg");
    let err = decode_rgb(&truncated).map(|_| ()).unwrap_err().to_string();
    assert!(err.contains("truncated.jpg"), "{err}");
}
