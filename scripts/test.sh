#!/usr/bin/env bash
# Set up (scripts/setup.sh --extras), lint, and run the test suite on transformers 5.x and on transformers 4.57; then,
# in .venv/extras (torch 2.14.1 with torchvision, torchcodec and decord2), the optional backends' tests and the
# live comparison with transformers' torchvision processors, on both transformers versions, where a test that
# skips is a failure (STAVE_EXPECT_EXTRAS=1). Where .venv/extras could not be set up, the reason is printed.
# Arguments go to the main runs only; with arguments the extras run is left out.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup.sh --extras
.venv/bin/python -m ruff check src tests benchmarks
echo "== tests, transformers $(.venv/bin/python -c 'import transformers; print(transformers.__version__)')"
STAVE_EXPECT_TRANSFORMERS=5. .venv/bin/python -m pytest -q "$@"
echo "== tests, transformers 4.57"
STAVE_EXPECT_TRANSFORMERS=4.57. PYTHONPATH=.venv/compat/transformers-4.57 .venv/bin/python -m pytest -q "$@"
if [ "$#" -gt 0 ]; then
  echo "== optional backends and live processor parity: left out (arguments given)"
elif [ -f .venv/extras/.stave-setup ]; then
  extras_tests=(tests/test_video_backends.py tests/test_video.py::test_resizing_and_packing_match_transformers_processors_live
    tests/test_processing.py::test_qwen3_inputs_equal_transformers_processor_live)
  echo "== optional backends and live processor parity (.venv/extras), transformers $(.venv/extras/bin/python -c 'import transformers; print(transformers.__version__)')"
  STAVE_EXPECT_EXTRAS=1 .venv/extras/bin/python -m pytest -q -p no:cacheprovider "${extras_tests[@]}"
  echo "== live processor parity (.venv/extras), transformers 4.57"
  STAVE_EXPECT_EXTRAS=1 PYTHONPATH=.venv/compat/transformers-4.57 .venv/extras/bin/python -m pytest -q -p no:cacheprovider \
    tests/test_video.py::test_resizing_and_packing_match_transformers_processors_live \
    tests/test_processing.py::test_qwen3_inputs_equal_transformers_processor_live
else
  echo "== optional backends and live processor parity: not run, .venv/extras unavailable: $(tail -n +2 .venv/extras.unavailable 2>/dev/null || echo 'see scripts/setup.sh')"
fi
