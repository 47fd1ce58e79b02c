#!/usr/bin/env bash
# Set up (scripts/setup.sh; .venv/extras in the background), lint, and run the test suite (in parallel processes,
# pytest-xdist) on transformers 5.x and, less the tests marked
# version_independent (their outcome cannot depend on the version: tests/version_independence.py), on 4.57, where
# the DeepSpeed ZeRO-2/ZeRO-3 tests must run (STAVE_EXPECT_DEEPSPEED=1: a skip is a failure); then,
# in .venv/extras (torch 2.14.1 with torchvision, torchcodec and decord2), the optional backends' tests and the
# live comparison with transformers' torchvision processors, on both transformers versions, where a test that
# skips is a failure (STAVE_EXPECT_EXTRAS=1). Where .venv/extras could not be set up, the reason is printed.
# Chromium for stave app's browser test is installed with apt-get (see below).
# Arguments go to the main runs only; with arguments the extras run is left out.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup.sh
# stave app's browser test (tests/test_app_browser.py) drives Debian's Chromium with Selenium: installed with apt-get
# where missing (as root). Where it cannot be, that test skips, and this says so loudly (here and at the end).
browser_note=""
browser_packages=(chromium chromium-driver)
if ! { command -v chromium >/dev/null && command -v chromedriver >/dev/null; }; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    { DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${browser_packages[@]}" \
      || { apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${browser_packages[@]}"; }; \
    } >.venv/chromium-install.log 2>&1 || browser_note="apt-get cannot install ${browser_packages[*]} (see .venv/chromium-install.log)"
  else
    browser_note="Chromium and chromedriver are missing and cannot be installed here (apt-get as root)"
  fi
fi
if [ -z "$browser_note" ]; then
  export STAVE_EXPECT_BROWSER=1  # the browser test must run: a skip is a failure
else
  echo "!!!!! $browser_note: the browser test of stave app (tests/test_app_browser.py) will SKIP !!!!!" >&2
fi
# .venv/extras (a few minutes of downloads on a fresh clone) is set up in the background while the main runs test,
# unless arguments leave the extras run out; its output is printed before that run.
extras_setup_pid=""
if [ "$#" -eq 0 ]; then
  bash scripts/setup.sh --extras >.venv/extras-setup.out 2>&1 &
  extras_setup_pid=$!
fi
.venv/bin/python -m ruff check src tests benchmarks
# The tests run in parallel processes (pytest-xdist), one per CPU core unless STAVE_TEST_WORKERS says otherwise
# (tests/conftest.py gives each its share of torch threads).
workers=(-n "${STAVE_TEST_WORKERS:-auto}")
echo "== tests, transformers $(.venv/bin/python -c 'import transformers; print(transformers.__version__)')"
STAVE_EXPECT_DEEPSPEED=1 STAVE_EXPECT_TRANSFORMERS=5. .venv/bin/python -m pytest -q "${workers[@]}" "$@"
echo "== tests, transformers 4.57 (not the version_independent ones)"
STAVE_EXPECT_DEEPSPEED=1 STAVE_EXPECT_TRANSFORMERS=4.57. PYTHONPATH=.venv/compat/transformers-4.57 \
  .venv/bin/python -m pytest -q "${workers[@]}" -m "not version_independent" "$@"
if [ -n "$extras_setup_pid" ]; then
  wait "$extras_setup_pid" || { cat .venv/extras-setup.out; exit 1; }
  cat .venv/extras-setup.out
fi
if [ "$#" -gt 0 ]; then
  echo "== optional backends and live processor parity: left out (arguments given)"
elif [ -f .venv/extras/.stave-setup ]; then
  extras_tests=(tests/test_video_backends.py tests/test_video.py::test_resizing_and_packing_match_transformers_processors_live
    tests/test_processing.py::test_qwen3_inputs_equal_transformers_processor_live
    tests/test_processing.py::test_qwen3_inputs_with_no_video_options_equal_transformers_processor_with_its_defaults_live
    tests/test_llava_onevision.py::test_inputs_equal_transformers_processor_live
    tests/test_llava_next_video.py::test_inputs_equal_transformers_processor_live
    tests/test_internvl.py::test_inputs_equal_transformers_processor_live)
  echo "== optional backends and live processor parity (.venv/extras), transformers $(.venv/extras/bin/python -c 'import transformers; print(transformers.__version__)')"
  STAVE_EXPECT_EXTRAS=1 .venv/extras/bin/python -m pytest -q -p no:cacheprovider "${extras_tests[@]}"
  echo "== live processor parity (.venv/extras), transformers 4.57"
  STAVE_EXPECT_EXTRAS=1 PYTHONPATH=.venv/compat/transformers-4.57 .venv/extras/bin/python -m pytest -q -p no:cacheprovider \
    tests/test_video.py::test_resizing_and_packing_match_transformers_processors_live \
    tests/test_processing.py::test_qwen3_inputs_equal_transformers_processor_live \
    tests/test_processing.py::test_qwen3_inputs_with_no_video_options_equal_transformers_processor_with_its_defaults_live \
    tests/test_llava_onevision.py::test_inputs_equal_transformers_processor_live \
    tests/test_llava_next_video.py::test_inputs_equal_transformers_processor_live \
    tests/test_internvl.py::test_inputs_equal_transformers_processor_live
else
  echo "== optional backends and live processor parity: not run, .venv/extras unavailable: $(tail -n +2 .venv/extras.unavailable 2>/dev/null || echo 'see scripts/setup.sh')"
fi
if [ -n "$browser_note" ]; then
  echo "!!!!! the browser test of stave app was SKIPPED: $browser_note !!!!!" >&2
fi
