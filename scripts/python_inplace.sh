#!/usr/bin/env bash
# Builds the Python package's extension (python/Cargo.toml) with cargo's debug profile, beside the
# tests' build, and places it in python/samix/ so `PYTHONPATH=python` imports the working tree's
# package without installing anything (what `maturin develop` does, minus pip). Used by
# scripts/test.sh; `pip install .` is the way to install the package (README, "From PyTorch").
# Expects the environment of scripts/env.sh.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
cargo build --quiet -p samix-python "$@"
profile=debug
[[ " $* " == *" --release "* ]] && profile=release
suffix="$(python -c 'import sysconfig; print(sysconfig.get_config_var("EXT_SUFFIX"))')"
ln -sfn "../../target/$profile/lib_samix.so" "python/samix/_samix$suffix"
