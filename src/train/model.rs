//! A run's classifier with its variables: built from the run's config and seed, or loaded from a
//! run's checkpoint (the deployed network of any run, frozen for policies that consult one).
use super::checkpoint::{self, Checkpoint};
use crate::config::TrainConfig;
use crate::data::DatasetInfo;
use crate::model::Network;
use crate::rng::{stream, Stream};
use crate::{Error, Result};
use std::path::Path;
use tch::nn::VarStore;
use tch::{Device, Tensor};

/// Seeds libtorch's generator (weight init) from the run seed.
pub fn seed_init(seed: u64) {
    tch::manual_seed((rand::RngCore::next_u64(&mut stream(seed, Stream::Init, 0, 0)) >> 1) as i64);
}

/// A classifier with its variables, built from a config for a dataset.
pub struct Model {
    pub vs: VarStore,
    pub net: Network,
}

impl Model {
    /// Builds the network with weights drawn from the run seed, then those of `model.init_from`
    /// if the config names a file.
    pub fn build(cfg: &TrainConfig, info: &DatasetInfo, device: Device) -> Result<Model> {
        let model = Self::build_at(cfg, info, device, None)?;
        if let Some(path) = &cfg.model.init_from {
            crate::model::interop::init_from(&model.vs, "", path)?;
        }
        Ok(model)
    }

    /// As [`Model::build`], with the variables named under `prefix` (`k` = SAMix's EMA network).
    pub fn build_at(cfg: &TrainConfig, info: &DatasetInfo, device: Device, prefix: Option<&str>) -> Result<Model> {
        seed_init(cfg.seed);
        let vs = VarStore::new(device);
        let root = match prefix {
            Some(p) => vs.root() / p,
            None => vs.root(),
        };
        let net = Network::new(&root, &cfg.model, info.channels as i64, info.num_classes as i64)?;
        Ok(Model { vs, net })
    }

    /// A frozen classifier from a samix run or checkpoint folder (for AttentiveMix+ and
    /// PuzzleMix's saliency): its config gives the architecture; channels and classes come from
    /// the saved weights.
    pub fn load_frozen(dir: &Path, device: Device) -> Result<(VarStore, Network)> {
        let ckpt = checkpoint::open(dir)?;
        let cfg = TrainConfig::load(&ckpt.config_path(), &[])?;
        let weights = ckpt.dir.join(checkpoint::MODEL_FILE);
        let tensors = Tensor::read_safetensors(&weights).map_err(|e| Error::data(&weights, e.to_string()))?;
        let prefix = Self::deployed_prefix(&cfg)?.map_or(String::new(), |p| format!("{p}."));
        let shape = |name: &str| {
            let key = format!("{prefix}{name}");
            tensors
                .iter()
                .find(|(n, _)| *n == key)
                .map(|(_, t)| t.size())
                .ok_or_else(|| Error::data(&weights, format!("no `{key}` in the checkpoint")))
        };
        let (classes, channels) = (shape("fc.weight")?[0], shape("conv1.weight")?[1]);
        let info = DatasetInfo {
            name: "frozen".into(),
            num_classes: classes as usize,
            channels: channels as usize,
            mean: vec![],
            std: vec![],
            class_names: vec![],
        };
        let model = Self::from_checkpoint(&ckpt, &cfg, &info, device)?;
        Ok((model.vs, model.net))
    }

    /// The weights of the classifier a run or checkpoint folder deploys, in root names (the EMA
    /// network of an online SAMix run without its `k.` prefix), with its architecture.
    pub fn deployed_weights(dir: &Path) -> Result<(crate::model::ModelConfig, crate::model::interop::NetworkWeights)> {
        let ckpt = checkpoint::open(dir)?;
        let cfg = TrainConfig::load(&ckpt.config_path(), &[])?;
        let path = ckpt.dir.join(checkpoint::MODEL_FILE);
        let prefix = Self::deployed_prefix(&cfg)?.map_or(String::new(), |p| format!("{p}."));
        let tensors = Tensor::read_safetensors(&path).map_err(|e| Error::data(&path, e.to_string()))?;
        // Under the deployed network's prefix only (a SAMix checkpoint also holds `q.`, `mixer.`).
        let network: std::collections::BTreeMap<String, Tensor> =
            tensors.into_iter().filter_map(|(n, t)| Some((n.strip_prefix(&prefix)?.to_string(), t))).collect();
        let weights = crate::model::interop::check_against(&path, &network, &cfg.model)?;
        Ok((cfg.model, weights))
    }

    /// Where a run's deployed classifier lives in its checkpoint: at the root, or for online
    /// SAMix/AutoMix under `k` (the EMA network with its clean-image head, `one_k`).
    /// A self-supervised pre-training run deploys no classifier (its backbone is evaluated by
    /// `samix linear`).
    fn deployed_prefix(cfg: &TrainConfig) -> Result<Option<&'static str>> {
        if cfg.ssl.is_some() {
            return Err(Error::config(
                "ssl",
                "this is a self-supervised pre-training run: it has no trained classifier; evaluate its backbone with `samix linear --backbone RUN --config LINEAR.toml`",
            ));
        }
        Ok(cfg.mix.online_config().map(|_| "k"))
    }

    /// The classifier a checkpoint deploys (see [`Model::deployed_prefix`]).
    pub fn from_checkpoint(ckpt: &Checkpoint, cfg: &TrainConfig, info: &DatasetInfo, device: Device) -> Result<Model> {
        let mut model = Self::build_at(cfg, info, device, Self::deployed_prefix(cfg)?)?;
        ckpt.load_model(&mut model.vs)?;
        Ok(model)
    }
}
