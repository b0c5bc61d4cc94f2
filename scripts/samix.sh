#!/usr/bin/env bash
# Runs the samix CLI on a fresh machine: sets up torch (once), builds the release binary (when
# sources changed), then passes every argument to it. Example:
#   scripts/samix.sh train --config configs/quickstart.toml
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$root/scripts/setup.sh" >&2
# In this repository's layout the real datasets sit beside the project; use them as the data
# directory so configs without data.path never touch the network.
if [ -z "${SAMIX_DATA:-}" ] && [ -d "$root/../shared/datasets" ]; then
  export SAMIX_DATA="$root/../shared/datasets"
fi
# shellcheck source=scripts/env.sh
source "$root/scripts/env.sh"
if [ ! -x "$root/target/release/samix" ]; then
  echo "samix.sh: building the release binary (the first build takes about 4 minutes on 2 cores; later calls rebuild only what changed)" >&2
fi
cargo build --release --quiet --manifest-path "$root/Cargo.toml"
exec "$root/target/release/samix" "$@"
