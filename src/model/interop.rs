//! Weights shared with torchvision and timm, and pretrained initialisation (`model.init_from`).
//! samix's ResNets and ResNeXt name their variables as torchvision's do (`conv1`, `bn1`,
//! `layer2.0.downsample.0`, `fc`, ...), which timm's ResNets share; the state dicts differ only
//! in BatchNorm's `num_batches_tracked` counters, which samix does not keep. Conversion is
//! therefore a check of every name, shape and kind against the architecture, plus those
//! counters. A checkpoint holds more than the network it deploys (online SAMix: the online
//! network, the mix heads, the Mixer): [`network_part`] takes the network out and counts the
//! rest. Reads and writes safetensors files; touches no other state.
use super::{ModelConfig, Network};
use crate::{Error, Result};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use tch::nn::VarStore;
use tch::{Device, Kind, Tensor};

const BN_COUNTER: &str = ".num_batches_tracked";

/// Weights of a network in samix's naming, checked against an architecture.
pub struct NetworkWeights {
    /// Variable name → tensor (f32), as a samix network of `config` holds them.
    pub tensors: BTreeMap<String, Tensor>,
    pub in_channels: i64,
    pub num_classes: i64,
}

/// Reads a torchvision or timm state dict (ResNet/ResNeXt, DeiT, ConvNeXt) saved as safetensors
/// and checks it against `config` (channels and classes are read from the input layer's and the
/// classifier's weights: `conv1.weight` and `fc.weight` for a ResNet).
pub fn import_torchvision(path: &Path, config: &ModelConfig) -> Result<NetworkWeights> {
    let stored = read(path)?;
    let tensors: BTreeMap<String, Tensor> = stored
        .into_iter()
        .filter(|(n, _)| !n.ends_with(BN_COUNTER))
        .map(|(n, t)| (n, t.to_kind(Kind::Float)))
        .collect();
    check_against(path, &tensors, config)
}

/// A samix network's weights (root names, as [`import_torchvision`] returns or a checkpoint's
/// deployed network) as a torchvision state dict: each BatchNorm gains its
/// `num_batches_tracked` counter (0: samix keeps none; torch ignores it when a momentum is set).
pub fn export_torchvision(weights: &NetworkWeights) -> Vec<(String, Tensor)> {
    let mut out: Vec<(String, Tensor)> = weights.tensors.iter().map(|(n, t)| (n.clone(), t.shallow_clone())).collect();
    for name in weights.tensors.keys() {
        if let Some(layer) = name.strip_suffix(".running_mean") {
            out.push((format!("{layer}{BN_COUNTER}"), Tensor::zeros([], (Kind::Int64, Device::Cpu))));
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// Checks `tensors` (samix names) against the network `config` builds for their channels and
/// classes: every variable present with its shape, nothing else. Errors name `path` and the key.
pub fn check_against(path: &Path, tensors: &BTreeMap<String, Tensor>, config: &ModelConfig) -> Result<NetworkWeights> {
    let dim = |name: &str, i: usize| -> Result<i64> {
        let arch = format!("{:?}", config.arch);
        let t = tensors.get(name).ok_or_else(|| Error::data(path, format!("no `{name}` (is this a {arch}?)")))?;
        t.size().get(i).copied().ok_or_else(|| Error::data(path, format!("`{name}` has too few dimensions")))
    };
    let (input, classifier) = (config.arch.input_weight(), config.arch.classifier_weight());
    let (in_channels, num_classes) = (dim(input, 1)?, dim(&classifier, 0)?);
    check_counts(path, config, in_channels, num_classes)?;
    check_finite(path, tensors)?;
    // The architecture as configs name it (`resnet50`).
    let arch = serde_json::to_value(config.arch).ok().and_then(|v| v.as_str().map(String::from)).unwrap_or_default();
    let vs = VarStore::new(Device::Cpu);
    Network::new(&vs.root(), config, in_channels, num_classes)?;
    let expected = vs.variables();
    let mut names: Vec<&String> = expected.keys().collect();
    names.sort();
    for name in names {
        let want = expected[name].size();
        match tensors.get(name) {
            None => {
                return Err(Error::data(path, format!("no `{name}`: not a {arch} of this layout")));
            }
            Some(t) if t.size() != want => {
                let msg = format!("`{name}` is {:?}, a {arch} has {want:?} there", t.size());
                return Err(Error::data(path, msg));
            }
            Some(_) => {}
        }
    }
    if let Some(extra) = tensors.keys().find(|n| !expected.contains_key(*n)) {
        return Err(Error::data(path, format!("`{extra}` belongs to no variable of a {arch}")));
    }
    let tensors = tensors.iter().map(|(n, t)| (n.clone(), t.shallow_clone())).collect();
    Ok(NetworkWeights { tensors, in_channels, num_classes })
}

/// Input channels and classes as a weights file states them: at least 1 (a network of 0
/// classes was built and written), at most [`crate::limits::MAX_CLASSES`] (before it is built).
fn check_counts(path: &Path, config: &ModelConfig, in_channels: i64, num_classes: i64) -> Result<()> {
    use crate::limits::MAX_CLASSES;
    let classifier = config.arch.classifier_weight();
    let counts = [(config.arch.input_weight(), "input channels", in_channels), (&classifier, "classes", num_classes)];
    for (name, what, n) in counts {
        if n < 1 || n as u64 > MAX_CLASSES {
            let msg = format!("`{name}` gives {n} {what}; a network has 1 to {MAX_CLASSES}");
            return Err(Error::data(path, msg));
        }
    }
    Ok(())
}

/// Refuses weights holding NaN or an infinity, naming the first such tensor: they would be
/// written out, or trained from, as if they were weights.
fn check_finite(path: &Path, tensors: &BTreeMap<String, Tensor>) -> Result<()> {
    for (name, t) in tensors {
        let floating = matches!(t.kind(), Kind::Float | Kind::Double | Kind::Half | Kind::BFloat16);
        if floating && t.numel() > 0 && t.isfinite().all().int64_value(&[]) == 0 {
            return Err(Error::data(path, format!("`{name}` holds non-finite values (NaN or infinity)")));
        }
    }
    Ok(())
}

/// What [`network_part`] left out of a checkpoint: each part (`q.*`, `k.head_mix.*`, `mixer.*`)
/// with its number of tensors.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LeftOut(pub BTreeMap<String, usize>);

impl LeftOut {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl std::fmt::Display for LeftOut {
    /// `k.head_mix.* (2 tensors), mixer.* (18 tensors), q.* (64 tensors)`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let parts: Vec<String> = self.0.iter().map(|(part, n)| format!("{part} ({n} tensors)")).collect();
        f.write_str(&parts.join(", "))
    }
}

/// The tensors of the network under `prefix` (`"k."`, or `""` for the root) among a checkpoint's,
/// in root names, without the heads under it that `heads` names (the mix head of online SAMix:
/// no torchvision or timm ResNet has one); returns them with what was left out. Anything else
/// under `prefix` stays, for [`check_against`] to refuse by name.
pub fn network_part(
    tensors: Vec<(String, Tensor)>,
    prefix: &str,
    heads: &[&str],
) -> (BTreeMap<String, Tensor>, LeftOut) {
    let mut network = BTreeMap::new();
    let mut left_out = LeftOut::default();
    for (name, t) in tensors {
        let part = match name.strip_prefix(prefix) {
            None => format!("{}.*", name.split('.').next().unwrap_or_default()),
            Some(key) => match heads.iter().find(|h| key.strip_prefix(**h).is_some_and(|r| r.starts_with('.'))) {
                Some(head) => format!("{prefix}{head}.*"),
                None => {
                    network.insert(key.to_string(), t);
                    continue;
                }
            },
        };
        *left_out.0.entry(part).or_insert(0) += 1;
    }
    (network, left_out)
}

/// Initialises the network under `prefix` of `vs` (`""` for the root) from a samix weights file
/// (`samix convert` writes one from torchvision's or timm's): every variable but the classifier
/// (`classifier`: `fc.` of a ResNet, which keeps its fresh initialisation, as transfer to a new
/// label set needs) must be in the file with its shape. Returns how many variables were loaded.
pub fn init_from(vs: &VarStore, prefix: &str, classifier: &str, path: &Path) -> Result<usize> {
    if !path.is_file() {
        return Err(Error::config("model.init_from", format!("{} is not a file", path.display())));
    }
    let stored: HashMap<String, Tensor> = read(path)?.into_iter().filter(|(n, _)| !n.ends_with(BN_COUNTER)).collect();
    let vars = vs.variables();
    let mut names: Vec<&String> = vars.keys().filter(|n| n.starts_with(prefix)).collect();
    names.sort();
    let mut loaded = Vec::new();
    for name in names {
        let key = &name[prefix.len()..];
        if key.starts_with(classifier) {
            continue;
        }
        let var = &vars[name];
        let t = stored.get(key).ok_or_else(|| Error::data(path, format!("no `{key}` (model.init_from)")))?;
        if t.size() != var.size() {
            let msg =
                format!("`{key}` is {:?} in the file, {:?} in this model (model.init_from)", t.size(), var.size());
            return Err(Error::data(path, msg));
        }
        loaded.push((var.shallow_clone(), t));
    }
    tch::no_grad(|| {
        for (var, t) in &loaded {
            let mut var = var.shallow_clone();
            var.copy_(&t.to_kind(var.kind()).to_device(var.device()));
        }
    });
    tracing::info!("initialised {} variables from {} (the classifier starts fresh)", loaded.len(), path.display());
    Ok(loaded.len())
}

/// Reads samix-named network weights from a safetensors file and checks them against `config`.
pub fn read_samix(path: &Path, config: &ModelConfig) -> Result<NetworkWeights> {
    let tensors: BTreeMap<String, Tensor> = read(path)?.into_iter().collect();
    check_against(path, &tensors, config)
}

/// A network of `config` with the samix weights of `path` (every variable checked), on `device`.
pub fn load_network(path: &Path, config: &ModelConfig, device: Device) -> Result<(VarStore, Network)> {
    let weights = read_samix(path, config)?;
    let vs = VarStore::new(device);
    let net = Network::new(&vs.root(), config, weights.in_channels, weights.num_classes)?;
    let vars = vs.variables();
    tch::no_grad(|| {
        for (name, t) in &weights.tensors {
            if let Some(var) = vars.get(name) {
                let mut var = var.shallow_clone();
                var.copy_(&t.to_device(device));
            }
        }
    });
    Ok((vs, net))
}

/// Writes named tensors as a safetensors file (atomically: a failed write leaves no file).
pub fn save(path: &Path, named: Vec<(String, Tensor)>) -> Result<()> {
    crate::files::write_safetensors_atomic(path, named)
}

fn read(path: &Path) -> Result<Vec<(String, Tensor)>> {
    crate::files::read_safetensors(path, "safetensors weights")
}
