"""Independent PyTorch oracle of ONE linear-evaluation step (tests/parity/linear.rs).

    linear_probe_step.py DIR [--break other_bn_mode]

Reads DIR/init.safetensors (the network before the step: the pre-trained ResNet backbone and a
fresh classifier `fc`, BN running statistics included), DIR/step.safetensors (images x, labels y)
and DIR/step.json (lr, momentum, weight decay, nesterov, `probe_bn`); writes DIR/oracle.safetensors
with the loss and `after.<name>` for every variable.

The protocol (docs/SSL.md "Linear evaluation"): the backbone is frozen, only `fc` trains (plain
cross-entropy, SGD); `probe_bn = "eval"` normalises with the stored running statistics and leaves
them alone, `"train"` — the reference's `frozen_stages = 4, norm_eval = False` — normalises with
the batch's statistics and updates the running ones (momentum 0.1), BN's scale and shift frozen.
The ResNet is the supervised oracle's (samix_step.py), its BN swapped for the eval-mode one when
asked.

--break other_bn_mode runs the other BN mode, so the comparison can be shown to catch the mode.
"""
import argparse
import json
import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, str(Path(__file__).resolve().parent))
from samix_step import BN_EPS, Variables, check_kinks, is_running_stat, resnet_forward  # noqa: E402
from step_optim import sgd_first_step  # noqa: E402


class EvalModeVariables(Variables):
    """BN with the stored running statistics, which it leaves as they were."""

    def batch_norm(self, name, h):
        return F.batch_norm(h, self.stats[f"{name}.running_mean"], self.stats[f"{name}.running_var"],
                            self.params[f"{name}.weight"], self.params[f"{name}.bias"],
                            training=False, eps=BN_EPS)


def run_step(init, step, settings, broken):
    dtype = torch.float64 if settings["dtype"] == "float64" else torch.float32
    train_bn = (settings["probe_bn"] == "train") != (broken == "other_bn_mode")
    # The supervised oracle's ResNet reads `{net}.<name>`; the probe's network is stored unprefixed.
    prefixed = {f"net.{name}": t for name, t in init.items()}
    v = (Variables if train_bn else EvalModeVariables)(prefixed, ("net.fc.",), dtype)
    h, _ = resnet_forward(v, "net", step["x"].to(dtype))
    logits = F.linear(h.mean(dim=(2, 3)), v.params["net.fc.weight"], v.params["net.fc.bias"])
    loss = F.cross_entropy(logits, step["y"].long())
    loss.backward()
    for name, param in v.params.items():
        if param.requires_grad:
            sgd_first_step(param, settings["lr"], settings["momentum"], settings["weight_decay"],
                           settings["nesterov"])
    out = {"loss": loss.detach()}
    for name in init:
        key = f"net.{name}"
        out[f"after.{name}"] = (v.stats[key] if is_running_stat(name) else v.params[key]).detach()
    check_kinks(dtype)
    return {k: t.to(dtype).contiguous().clone() for k, t in out.items()}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("dir", type=Path)
    parser.add_argument("--break", dest="broken", choices=("other_bn_mode",))
    args = parser.parse_args()
    torch.set_num_threads(1)
    init = load_file(args.dir / "init.safetensors")
    init = {k: v for k, v in init.items() if not k.endswith("num_batches_tracked")}
    step = load_file(args.dir / "step.safetensors")
    settings = json.loads((args.dir / "step.json").read_text())
    save_file(run_step(init, step, settings, args.broken), args.dir / "oracle.safetensors")


if __name__ == "__main__":
    main()
