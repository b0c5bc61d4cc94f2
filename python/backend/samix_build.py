"""PEP 517 backend for the samix wheel: maturin, after pointing the build at the installed torch.

torch-sys (the crate under tch) compiles against libtorch and runs `python` for the Python
headers. Under pip the build runs in an isolated environment where `import torch` fails, and the
venv's `python` may not be on PATH; so this asks the interpreter pip runs for torch's folder with
pip's isolation removed, and hands it to torch-sys as LIBTORCH (the same files the extension will
load at import). Everything else is maturin's own hooks.
"""

import os
import subprocess
import sys

import maturin

_FIND_TORCH = (
    "import os, torch; print(os.path.dirname(torch.__file__)); print(torch.__version__); "
    "print(int(torch._C._GLIBCXX_USE_CXX11_ABI))"
)


def _installed_torch():
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONNOUSERSITE", "PYTHONHOME")}
    done = subprocess.run(
        [sys.executable, "-c", _FIND_TORCH], env=env, capture_output=True, text=True, timeout=300
    )
    if done.returncode != 0:
        raise RuntimeError(
            f"samix builds against the installed torch, and {sys.executable} cannot import it: "
            "install torch==2.11.0 first (pip install torch==2.11.0). "
            f"Python said: {done.stderr.strip().splitlines()[-1] if done.stderr.strip() else 'nothing'}"
        )
    folder, version, cxx11_abi = done.stdout.splitlines()[:3]
    if not version.startswith("2.11.0"):
        raise RuntimeError(f"samix links torch 2.11.0; {sys.executable} has torch {version} ({folder})")
    return folder, cxx11_abi


def _point_at_torch():
    if os.environ.get("LIBTORCH"):
        return
    torch_dir, cxx11_abi = _installed_torch()
    os.environ["LIBTORCH"] = torch_dir
    os.environ["LIBTORCH_CXX11_ABI"] = cxx11_abi
    os.environ.pop("LIBTORCH_USE_PYTORCH", None)
    os.environ["PATH"] = os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", "")


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    _point_at_torch()
    return maturin.build_wheel(wheel_directory, config_settings, metadata_directory)


def build_editable(wheel_directory, config_settings=None, metadata_directory=None):
    _point_at_torch()
    return maturin.build_editable(wheel_directory, config_settings, metadata_directory)


build_sdist = maturin.build_sdist
get_requires_for_build_wheel = maturin.get_requires_for_build_wheel
get_requires_for_build_sdist = maturin.get_requires_for_build_sdist
get_requires_for_build_editable = maturin.get_requires_for_build_editable
prepare_metadata_for_build_wheel = maturin.prepare_metadata_for_build_wheel
prepare_metadata_for_build_editable = maturin.prepare_metadata_for_build_editable
