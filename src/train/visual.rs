//! Mask visuals of a Mixer trained online, supervised or self-supervised (the reference's SAVEHook): for a fixed set of test images paired
//! with their neighbours, a PNG grid per snapshot — rows: first images, second images, the mask s
//! and the mixed image at λ = 0.3, the same at λ = 0.7 (s white = second image) — and at the end a
//! strip of the λ = 0.5 masks, one row per snapshot, showing how the masks evolved.
use crate::model::StagedNet;
use crate::pictures::{write_grid, GridLabels};
use crate::samix::{apply_mask, OnlineSamix};
use crate::{Error, Result};
use std::path::{Path, PathBuf};
use tch::{Kind, Tensor};

/// Whether an epoch writes a mask grid: every `every` epochs (0: none) and after the last.
pub fn snapshot_due(every: usize, epoch: usize, total_epochs: usize) -> bool {
    epoch == total_epochs || (every > 0 && epoch.is_multiple_of(every))
}

pub struct MaskVisuals {
    images: Tensor,
    mean: Vec<f32>,
    std: Vec<f32>,
    evolution: Vec<Tensor>,
    /// The epoch of each row of `evolution`.
    evolution_epochs: Vec<usize>,
}

impl MaskVisuals {
    pub fn new(images: Tensor, mean: Vec<f32>, std: Vec<f32>) -> Self {
        MaskVisuals { images, mean, std, evolution: Vec::new(), evolution_epochs: Vec::new() }
    }

    fn to_unit(&self, x: &Tensor) -> Tensor {
        crate::data::transform::to_unit(x, &self.mean, &self.std)
    }

    /// Writes the epoch's grid of online SAMix's Mixer; returns its path.
    pub fn snapshot<N: StagedNet>(&mut self, nets: &OnlineSamix<N>, epoch: usize, out: &Path) -> Result<PathBuf> {
        let _guard = tch::no_grad_guard();
        let f = nets.mixer_features(&self.images, false);
        self.snapshot_with(|perm, lam| nets.mixer.mask(&f, perm, &Tensor::from(lam), false), epoch, out)
    }

    /// Writes the epoch's grid for any Mixer: `mask(perm, λ)` gives the masks of the fixed
    /// images paired by `perm` at `λ`. Returns the grid's path.
    pub fn snapshot_with(
        &mut self,
        mask: impl Fn(&Tensor, f64) -> Tensor,
        epoch: usize,
        out: &Path,
    ) -> Result<PathBuf> {
        let _guard = tch::no_grad_guard();
        let x = &self.images;
        let n = x.size()[0];
        let perm = Tensor::arange(n, (Kind::Int64, x.device())).roll([1], [0]);
        let partner = x.index_select(0, &perm);
        let mut rows = vec![self.to_unit(x), self.to_unit(&partner)];
        for lam in [0.3, 0.7] {
            let s = mask(&perm, lam);
            rows.push(s.expand_as(x).contiguous());
            rows.push(self.to_unit(&apply_mask(x, &partner, &s)));
        }
        self.evolution.push(mask(&perm, 0.5).expand_as(x).contiguous());
        self.evolution_epochs.push(epoch);
        let dir = out.join("visuals");
        std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        let path = dir.join(format!("{SNAPSHOT_PREFIX}{epoch:04}.png"));
        let labels = GridLabels {
            rows: ["first", "second", "mask λ=0.3", "mixed λ=0.3", "mask λ=0.7", "mixed λ=0.7"]
                .map(String::from)
                .to_vec(),
            columns: Vec::new(),
            legend: Some(format!("mask: black = first image, white = second (epoch {epoch})")),
        };
        write_grid(&rows, &labels, &path)?;
        Ok(path)
    }

    /// The fixed images the grids show.
    pub fn images(&self) -> &Tensor {
        &self.images
    }

    pub fn write_evolution(&self, out: &Path) -> Result<()> {
        if self.evolution.is_empty() {
            return Ok(());
        }
        let dir = out.join("visuals");
        std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        let labels = GridLabels {
            rows: self.evolution_epochs.iter().map(|e| format!("epoch {e}")).collect(),
            columns: Vec::new(),
            legend: Some("masks at λ=0.5: black = first image, white = second".into()),
        };
        write_grid(&self.evolution, &labels, &dir.join(EVOLUTION_FILE))
    }
}

/// The start of a mask grid's file name in `visuals/` (`masks_epoch_NNNN.png`).
const SNAPSHOT_PREFIX: &str = "masks_epoch_";
/// The strip of masks over the run, in `visuals/`.
const EVOLUTION_FILE: &str = "masks_evolution.png";

/// Whether `name` is a file these visuals write into `visuals/` (or its temporary name).
pub fn is_written_name(name: &str) -> bool {
    let snapshot = |n: &str| {
        let epoch = n.strip_prefix(SNAPSHOT_PREFIX).and_then(|r| r.strip_suffix(".png"));
        epoch.is_some_and(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()))
    };
    crate::files::is_or_tmp_of(name, |n| n == EVOLUTION_FILE || snapshot(n))
}
