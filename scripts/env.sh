# Source this (`source scripts/env.sh`) to build and run samix against the venv made by setup.sh:
# tch's build finds libtorch through the venv's python (LIBTORCH_USE_PYTORCH), and at run time
# torch's lib/ folder must be on the library path.
_samix_venv="${SAMIX_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/samix/venv-torch2.11.0}"
if [ ! -x "$_samix_venv/bin/python" ]; then
  echo "env.sh: no venv at $_samix_venv; run scripts/setup.sh first" >&2
  return 1 2>/dev/null || exit 1
fi
export VIRTUAL_ENV="$_samix_venv"
export PATH="$_samix_venv/bin:$PATH"
export LIBTORCH_USE_PYTORCH=1
_samix_torch_lib="$("$_samix_venv/bin/python" -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))' 2>/dev/null)"
export LD_LIBRARY_PATH="$_samix_torch_lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
unset _samix_venv _samix_torch_lib
