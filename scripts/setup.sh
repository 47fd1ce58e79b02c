#!/usr/bin/env bash
# Set up everything stave needs in .venv at the repository root:
#   .venv                               torch, stave (editable) with its dev tools and pyarrow (Video-MME),
#                                       transformers 5.x
#   .venv/compat/transformers-4.57      transformers 4.57 and its own dependencies, put in front of the
#                                       main environment with PYTHONPATH to test the older API
# Re-running is cheap: nothing is reinstalled unless pyproject.toml or this script changed.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

python_bin=${PYTHON:-}
if [ -z "$python_bin" ]; then
  for candidate in python3.11 python3.12 python3.13 python3; do
    if command -v "$candidate" >/dev/null 2>&1; then python_bin=$candidate; break; fi
  done
fi
"$python_bin" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
  || { echo "setup: Python >= 3.11 is required (found $("$python_bin" --version 2>&1))" >&2; exit 1; }

stamp=.venv/.stave-setup
want=$(cat pyproject.toml scripts/setup.sh | sha256sum | cut -c1-16)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && [ -x .venv/bin/python ]; then
  exit 0
fi

[ -x .venv/bin/python ] || "$python_bin" -m venv .venv
pip=(.venv/bin/python -m pip install --quiet --disable-pip-version-check)
# A torch that is already there (e.g. a CUDA build on a GPU machine) is kept; otherwise the CPU build.
.venv/bin/python -c 'import torch' 2>/dev/null || "${pip[@]}" "torch==2.13.0"
"${pip[@]}" -e ".[dev,videomme]"
compat=.venv/compat/transformers-4.57
rm -rf "$compat"
"${pip[@]}" --target "$compat" "transformers==4.57.6"
echo "$want" > "$stamp"
echo "setup: .venv ready ($(.venv/bin/python -c 'import torch, transformers; print("torch", torch.__version__, "transformers", transformers.__version__)'))"
