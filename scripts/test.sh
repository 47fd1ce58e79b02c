#!/usr/bin/env bash
# Set up (scripts/setup.sh), lint, and run the test suite on transformers 5.x and on transformers 4.57.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup.sh
.venv/bin/python -m ruff check src tests benchmarks
echo "== tests, transformers $(.venv/bin/python -c 'import transformers; print(transformers.__version__)')"
STAVE_EXPECT_TRANSFORMERS=5. .venv/bin/python -m pytest -q "$@"
echo "== tests, transformers 4.57"
STAVE_EXPECT_TRANSFORMERS=4.57. PYTHONPATH=.venv/compat/transformers-4.57 .venv/bin/python -m pytest -q "$@"
