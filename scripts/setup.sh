#!/usr/bin/env bash
# Set up everything stave needs in .venv at the repository root:
#   .venv                               torch, stave (editable) with its dev tools, pyarrow (Video-MME) and
#                                       gradio (`stave app`), transformers 5.x, deepspeed 0.19.8 (its CPU
#                                       accelerator runs the ZeRO-2/ZeRO-3 tests; it leaves torch and
#                                       transformers as they are)
#   .venv/compat/transformers-4.57      transformers 4.57 and its own dependencies, put in front of the
#                                       main environment with PYTHONPATH to test the older API
#   .venv/extras                        only with --extras (scripts/test.sh passes it; the main job needs
#                                       none of it): a second environment for what cannot live beside the main torch:
#                                       torch 2.14.1 (a CUDA build, run on the CPU) with torchvision,
#                                       torchcodec and decord2, transformers as in .venv, stave from this
#                                       checkout; scripts/test.sh runs the optional backends' tests and the
#                                       live comparison with transformers' torchvision processors in it.
#                                       torchcodec needs FFmpeg's shared libraries: installed with apt-get
#                                       where they are missing and this runs as root. Where any of it cannot
#                                       be installed or loaded, the reason is printed and kept in
#                                       .venv/extras.unavailable, and set-up goes on; it is not tried again
#                                       until pyproject.toml or this script change, or that file is deleted
#                                       (STAVE_SKIP_EXTRAS=1 skips this environment altogether). First
#                                       set-up: about 6 min and 5.5 GB (measured 5 min 47 s here).
# Re-running is cheap: nothing is reinstalled unless pyproject.toml or this script changed.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
with_extras=0
case "${1:-}" in
  --extras) with_extras=1 ;;
  "") ;;
  *) echo "setup: usage: bash scripts/setup.sh [--extras]" >&2; exit 2 ;;
esac

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
if ! { [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && [ -x .venv/bin/python ]; }; then
  [ -x .venv/bin/python ] || "$python_bin" -m venv .venv
  pip=(.venv/bin/python -m pip install --quiet --disable-pip-version-check)
  # A torch that is already there (e.g. a CUDA build on a GPU machine) is kept; otherwise the CPU build.
  .venv/bin/python -c 'import torch' 2>/dev/null || "${pip[@]}" "torch==2.13.0"
  "${pip[@]}" -e ".[dev,videomme,app]" "deepspeed==0.19.8"
  compat=.venv/compat/transformers-4.57
  rm -rf "$compat"
  "${pip[@]}" --target "$compat" "transformers==4.57.6"
  echo "$want" > "$stamp"
  echo "setup: .venv ready ($(.venv/bin/python -c 'import torch, transformers; from importlib.metadata import version; print("torch", torch.__version__, "transformers", transformers.__version__, "deepspeed", version("deepspeed"))'))"
fi

# -- .venv/extras: torchvision, torchcodec and decord2 beside torch 2.14.1 (see the top of this file) ----------
[ "$with_extras" = 1 ] || exit 0
extras=.venv/extras
unavailable=.venv/extras.unavailable
extras_stamp=$extras/.stave-setup
if [ "${STAVE_SKIP_EXTRAS:-0}" = 1 ]; then
  rm -f "$extras_stamp"
  printf '%s\n%s\n' skipped "skipped (STAVE_SKIP_EXTRAS=1)" > "$unavailable"
  exit 0
fi
if [ -f "$extras_stamp" ] && [ "$(cat "$extras_stamp")" = "$want" ]; then
  exit 0  # ready
fi
if [ -f "$unavailable" ] && [ "$(head -n1 "$unavailable")" = "$want" ]; then
  echo "setup: .venv/extras unavailable: $(tail -n +2 "$unavailable")"  # tried for this set-up already
  exit 0
fi
extras_failed() {
  printf '%s\n%s\n' "$want" "$1" > "$unavailable"
  echo "setup: .venv/extras unavailable, so the optional backends' tests and the live comparison with transformers' processors will not run: $1" >&2
  exit 0
}
started=$SECONDS
rm -f "$unavailable"
log=.venv/extras-setup.log
: >"$log"
[ -x "$extras/bin/python" ] || "$python_bin" -m venv "$extras" >>"$log" 2>&1 || extras_failed "cannot create the venv (see $log)"
xpip=("$extras/bin/python" -m pip install --quiet --disable-pip-version-check)
transformers_version=$(.venv/bin/python -c 'import transformers; print(transformers.__version__)')
"${xpip[@]}" "torch==2.14.1" "torchvision==0.29.1" >>"$log" 2>&1 \
  || extras_failed "pip cannot install torch 2.14.1 and torchvision 0.29.1 (see $log)"
"${xpip[@]}" -e ".[torchcodec,decord]" "transformers==$transformers_version" "torchcodec==0.17.0" "decord2==3.4.0" \
  pytest >>"$log" 2>&1 || extras_failed "pip cannot install stave[torchcodec,decord] (see $log)"
ffmpeg_check='import sys, torchcodec; sys.exit(torchcodec.ffmpeg_major_version is None)'
if ! "$extras/bin/python" -c "$ffmpeg_check" 2>>"$log"; then  # torchcodec needs FFmpeg's shared libraries
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    { apt-get install -y --no-install-recommends ffmpeg \
      || { apt-get update && apt-get install -y --no-install-recommends ffmpeg; }; } >>"$log" 2>&1 \
      || extras_failed "apt-get cannot install FFmpeg's shared libraries for torchcodec (see $log)"
  else
    extras_failed "torchcodec finds no FFmpeg shared libraries (major 4 to 9), and they cannot be installed here (apt-get as root)"
  fi
fi
check='
import sys
from stave.video import available_backends
sys.path.insert(0, "tests")
from fixtures.make_processor_fixture import torchvision_processors
torchvision_processors()
missing = {name: why for name, why in available_backends().items() if why}
sys.exit(f"video backends that cannot be used: {missing}" if missing else 0)
'
reason=$("$extras/bin/python" -c "$check" 2>&1 >/dev/null | tail -n1) || extras_failed "${reason:-the check failed}"
echo "$want" > "$extras_stamp"
echo "setup: .venv/extras ready in $((SECONDS - started)) s ($("$extras/bin/python" -c 'import torch, torchvision, torchcodec, decord, transformers as t; print("torch", torch.__version__, "torchvision", torchvision.__version__, "torchcodec", torchcodec.__version__, "decord2", decord.__version__, "transformers", t.__version__)' 2>/dev/null))"
