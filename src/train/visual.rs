//! Mask visuals of online SAMix (the reference's SAVEHook): for a fixed set of test images paired
//! with their neighbours, a PNG grid per snapshot — rows: first images, second images, the mask s
//! and the mixed image at λ = 0.3, the same at λ = 0.7 (s white = second image) — and at the end a
//! strip of the λ = 0.5 masks, one row per snapshot, showing how the masks evolved.
use super::samix::SamixNets;
use crate::mixer::apply_mask;
use crate::model::StagedNet;
use crate::{Error, Result};
use std::path::Path;
use tch::{Kind, Tensor};

pub struct MaskVisuals {
    images: Tensor,
    mean: Vec<f32>,
    std: Vec<f32>,
    evolution: Vec<Tensor>,
}

impl MaskVisuals {
    pub fn new(images: Tensor, mean: Vec<f32>, std: Vec<f32>) -> Self {
        MaskVisuals { images, mean, std, evolution: Vec::new() }
    }

    fn to_unit(&self, x: &Tensor) -> Tensor {
        let c = x.size()[1];
        let mean = Tensor::from_slice(&self.mean[..c as usize]).view([1, c, 1, 1]).to_device(x.device());
        let std = Tensor::from_slice(&self.std[..c as usize]).view([1, c, 1, 1]).to_device(x.device());
        (x * std + mean).clamp(0.0, 1.0)
    }

    pub fn snapshot(&mut self, nets: &SamixNets, epoch: usize, out: &Path) -> Result<()> {
        let _guard = tch::no_grad_guard();
        let x = &self.images;
        let n = x.size()[0];
        let perm = Tensor::arange(n, (Kind::Int64, x.device())).roll([1], [0]);
        let f = nets.net_k.features(x, false, &[nets.mask_stage]).1.remove(0);
        let partner = x.index_select(0, &perm);
        let mut rows = vec![self.to_unit(x), self.to_unit(&partner)];
        for lam in [0.3, 0.7] {
            let s = nets.mixer.mask(&f, &perm, lam, false);
            rows.push(s.expand_as(x).contiguous());
            rows.push(self.to_unit(&apply_mask(x, &partner, &s)));
        }
        self.evolution.push(nets.mixer.mask(&f, &perm, 0.5, false).expand_as(x).contiguous());
        let dir = out.join("visuals");
        std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        write_grid(&rows, &dir.join(format!("masks_epoch_{epoch:04}.png")))
    }

    pub fn write_evolution(&self, out: &Path) -> Result<()> {
        if self.evolution.is_empty() {
            return Ok(());
        }
        let dir = out.join("visuals");
        std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        write_grid(&self.evolution, &dir.join("masks_evolution.png"))
    }
}

/// Writes rows of images (`N×C×H×W` in [0, 1], C = 1 or 3) as one PNG with 2-pixel gaps.
pub fn write_grid(rows: &[Tensor], path: &Path) -> Result<()> {
    let gap = 2usize;
    let s = rows[0].size();
    let (cols, h, w) = (s[0] as usize, s[2] as usize, s[3] as usize);
    let (width, height) = (cols * (w + gap) + gap, rows.len() * (h + gap) + gap);
    let mut canvas = image::RgbImage::from_pixel(width as u32, height as u32, image::Rgb([255, 255, 255]));
    for (r, row) in rows.iter().enumerate() {
        let row = row.to_device(tch::Device::Cpu).to_kind(Kind::Float);
        let c = row.size()[1] as usize;
        let data = Vec::<f32>::try_from(&row.flatten(0, -1)).map_err(|e| Error::run(path, e.to_string()))?;
        for i in 0..cols.min(row.size()[0] as usize) {
            for y in 0..h {
                for x in 0..w {
                    let px = |ch: usize| {
                        let ch = ch.min(c - 1);
                        (data[((i * c + ch) * h + y) * w + x] * 255.0).round().clamp(0.0, 255.0) as u8
                    };
                    let (cx, cy) = (gap + i * (w + gap) + x, gap + r * (h + gap) + y);
                    canvas.put_pixel(cx as u32, cy as u32, image::Rgb([px(0), px(1), px(2)]));
                }
            }
        }
    }
    let tmp = path.with_extension("png.tmp");
    canvas.save_with_format(&tmp, image::ImageFormat::Png).map_err(|e| Error::run(&tmp, e.to_string()))?;
    std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))
}
