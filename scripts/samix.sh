#!/usr/bin/env bash
# Runs the samix CLI on a fresh machine: sets up torch (once), builds the release binary (when
# sources changed), then passes every argument to it. Example:
#   scripts/samix.sh train --config configs/quickstart.toml
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$root/scripts/setup.sh" >&2
# shellcheck source=scripts/env.sh
source "$root/scripts/env.sh"
cargo build --release --quiet --manifest-path "$root/Cargo.toml"
exec "$root/target/release/samix" "$@"
