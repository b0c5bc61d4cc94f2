#!/usr/bin/env bash
# Creates (idempotently) the Python venv that provides libtorch for tch:
# torch==2.11.0 from PyPI, the pair tch 0.24 is built for. Re-running is cheap: it checks the
# installed version first. Override the location with SAMIX_VENV.
set -euo pipefail

# Outside the checkout by default, so clean clones (CI) on the same machine reuse it.
venv="${SAMIX_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/samix/venv-torch2.11.0}"
torch_version="2.11.0"
py="${PYTHON:-python3}"

if [ ! -x "$venv/bin/python" ]; then
  echo "setup: creating venv at $venv"
  "$py" -m venv "$venv"
fi
have="$("$venv/bin/python" -c 'import torch; print(torch.__version__.split("+")[0])' 2>/dev/null || true)"
if [ "$have" != "$torch_version" ]; then
  echo "setup: installing torch==$torch_version into $venv (about 2.7 GB with its CUDA libraries; a few minutes, once)"
  "$venv/bin/python" -m pip install --quiet --upgrade pip
  "$venv/bin/python" -m pip install --quiet "torch==$torch_version" numpy
fi
# TensorBoard's own event reader: the tests read samix's event files back with it.
tensorboard_version="2.20.0"
have_tb="$("$venv/bin/python" -c 'import tensorboard; print(tensorboard.__version__)' 2>/dev/null || true)"
if [ "$have_tb" != "$tensorboard_version" ]; then
  echo "setup: installing tensorboard==$tensorboard_version into $venv (the tests' event-file reader)"
  "$venv/bin/python" -m pip install --quiet "tensorboard==$tensorboard_version"
fi
# torchvision (the model-weights interop tests build its ResNets) and safetensors (to save them),
# at the versions that go with torch 2.11.
torchvision_version="0.26.0"
safetensors_version="0.7.0"
have_tv="$("$venv/bin/python" -c 'import torchvision, safetensors; print(torchvision.__version__.split("+")[0], safetensors.__version__)' 2>/dev/null || true)"
if [ "$have_tv" != "$torchvision_version $safetensors_version" ]; then
  echo "setup: installing torchvision==$torchvision_version and safetensors==$safetensors_version into $venv (the interop tests' reference models)"
  "$venv/bin/python" -m pip install --quiet "torchvision==$torchvision_version" "safetensors==$safetensors_version"
fi
# timm (the RandAugment tests compare samix's operations with timm's on Pillow), pinned.
timm_version="1.0.28"
have_timm="$("$venv/bin/python" -c 'import timm; print(timm.__version__)' 2>/dev/null || true)"
if [ "$have_timm" != "$timm_version" ]; then
  echo "setup: installing timm==$timm_version into $venv (the RandAugment tests' reference)"
  "$venv/bin/python" -m pip install --quiet "timm==$timm_version"
fi
pytest_version="9.2.0"
have_pytest="$("$venv/bin/python" -c 'import pytest; print(pytest.__version__)' 2>/dev/null || true)"
if [ "$have_pytest" != "$pytest_version" ]; then
  echo "setup: installing pytest==$pytest_version into $venv (the Python package's tests)"
  "$venv/bin/python" -m pip install --quiet "pytest==$pytest_version"
fi
scipy_version="1.17.1"
have_scipy="$("$venv/bin/python" -c 'import scipy; print(scipy.__version__)' 2>/dev/null || true)"
if [ "$have_scipy" != "$scipy_version" ]; then
  echo "setup: installing scipy==$scipy_version into $venv (the ImageNet devkit converter's test)"
  "$venv/bin/python" -m pip install --quiet "scipy==$scipy_version"
fi
"$venv/bin/python" -c 'import torch; print("setup: torch", torch.__version__, "at", torch.__path__[0])' 2>/dev/null
