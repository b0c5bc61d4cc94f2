//! The learner a config names: self-supervised pre-training, online SAMix/AutoMix, or a
//! classifier with an input or feature policy. Builds networks; touches no files.
use super::learner::Learner;
use super::loaders::eval_loader;
use super::mixing::Mixing;
use super::samix_learner::SamixLearner;
use super::ssl_learner::SslLearner;
use super::supervised::SupervisedLearner;
use crate::config::TrainConfig;
use crate::data::loader::Loader;
use crate::data::{Dataset, DatasetInfo};
use crate::{Error, Result};
use std::sync::Arc;
use tch::{Device, Tensor};

/// The learner a config names, for the training split `train` described by `info`. An online
/// Mixer's visuals show the first images of `test_loader`; self-supervised training's k-NN
/// monitor reads `train` without augmentation.
pub fn build_learner(
    config: &TrainConfig,
    info: &DatasetInfo,
    train: &Arc<dyn Dataset>,
    test_loader: &Loader,
    device: Device,
) -> Result<Box<dyn Learner>> {
    let visual_batch = || -> Result<Option<Tensor>> {
        Ok(match test_loader.epoch(0).next() {
            Some(first) => {
                let first = first?;
                Some(first.images.narrow(0, 0, first.len().min(8) as i64))
            }
            None => None,
        })
    };
    if let Some(ssl) = &config.ssl {
        let bank = eval_loader(config, train.clone(), device);
        let mut learner = SslLearner::new(config, ssl, info, bank, device)?;
        if let Some(images) = visual_batch()? {
            learner.set_visual_batch(images, info.mean.clone(), info.std.clone());
        }
        return Ok(Box::new(learner));
    }
    match Mixing::from_config(&config.mix, crate::samix::Scenario::Supervised, info, config.image_side(), device)? {
        Mixing::Online { config: samix_config, options } => {
            let side =
                config.image_side().ok_or_else(|| Error::config("data.augment.image_size", "needed for SAMix"))?;
            let mut learner = SamixLearner::new(config, &samix_config, options, info, side, device)?;
            if let Some(images) = visual_batch()? {
                learner.set_visual_batch(images, info.mean.clone(), info.std.clone());
            }
            Ok(Box::new(learner))
        }
        mixing => Ok(Box::new(SupervisedLearner::with_mixing(config, info, device, mixing)?)),
    }
}
