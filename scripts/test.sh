#!/usr/bin/env bash
# Sets up torch (once), then builds and runs the whole test suite. Tests read the real datasets
# from ../shared/datasets (beside the project root). Extra arguments go to `cargo test`.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$root/scripts/setup.sh" >&2
# shellcheck source=scripts/env.sh
source "$root/scripts/env.sh"
cd "$root"
cargo test --no-fail-fast "$@"
