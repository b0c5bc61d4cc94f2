//! A run's classifier with its variables: built from the run's config and seed, or loaded from a
//! run's checkpoint (the deployed network of any run, frozen for policies that consult one).
use super::checkpoint::{self, Checkpoint};
use crate::config::TrainConfig;
use crate::data::DatasetInfo;
use crate::model::interop::{self, NetworkWeights};
use crate::model::{ModelConfig, Network};
use crate::rng::{stream, Stream};
use crate::{Error, Result};
use std::path::Path;
use tch::nn::VarStore;
use tch::Device;

/// The classifier a run deploys, as `samix convert` exports it.
pub struct Deployed {
    pub config: ModelConfig,
    pub weights: NetworkWeights,
    /// What the checkpoint holds beside it (online SAMix: `q.*`, `k.head_mix.*`, `mixer.*`).
    pub left_out: interop::LeftOut,
}

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
            crate::model::interop::init_from(&model.vs, "", cfg.model.arch.classifier_prefix(), path)?;
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
    /// the saved weights (read once, checksum checked).
    pub fn load_frozen(dir: &Path, device: Device) -> Result<(VarStore, Network)> {
        let ckpt = checkpoint::open(dir)?;
        let cfg = TrainConfig::load_stored(&ckpt.config_path(), &[])?;
        let weights = ckpt.dir.join(checkpoint::MODEL_FILE);
        let tensors = ckpt.model_tensors()?;
        let prefix = Self::deployed_prefix(&cfg)?;
        let key = |name: &str| prefix.map_or(name.to_string(), |p| format!("{p}.{name}"));
        let shape = |name: &str| {
            let key = key(name);
            tensors
                .iter()
                .find(|(n, _)| *n == key)
                .map(|(_, t)| t.size())
                .ok_or_else(|| Error::data(&weights, format!("no `{key}` in the checkpoint")))
        };
        let arch = cfg.model.arch;
        let (classes, channels) = (shape(&arch.classifier_weight())?[0], shape(arch.input_weight())?[1]);
        let info = DatasetInfo {
            name: "frozen".into(),
            num_classes: classes as usize,
            channels: channels as usize,
            mean: vec![],
            std: vec![],
            class_names: vec![],
        };
        let mut model = Self::build_at(&cfg, &info, device, prefix)?;
        crate::files::load_tensors_checked(&mut model.vs, &weights, tensors)?;
        Ok((model.vs, model.net))
    }

    /// The classifier a run or checkpoint folder deploys (the EMA network of an online SAMix run,
    /// without its `k.` prefix and its mix head), checked against its architecture, and what
    /// else the checkpoint holds, left out.
    pub fn deployed_weights(dir: &Path) -> Result<Deployed> {
        let ckpt = checkpoint::open(dir)?;
        let cfg = TrainConfig::load_stored(&ckpt.config_path(), &[])?;
        let prefix = Self::deployed_prefix(&cfg)?;
        let heads: &[&str] = if prefix.is_some() { &[crate::samix::online::MIX_HEAD] } else { &[] };
        let prefix = prefix.map_or(String::new(), |p| format!("{p}."));
        let (network, left_out) = interop::network_part(ckpt.model_tensors()?, &prefix, heads);
        let weights = interop::check_against(&ckpt.dir.join(checkpoint::MODEL_FILE), &network, &cfg.model)?;
        Ok(Deployed { config: cfg.model, weights, left_out })
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
