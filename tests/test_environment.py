"""The suite runs twice (scripts/test.sh): make sure each run really uses the transformers it claims."""

from __future__ import annotations

import os

import pytest
import transformers


def test_transformers_version_is_the_one_under_test():
    expected = os.environ.get("STAVE_EXPECT_TRANSFORMERS")
    if not expected:
        pytest.skip("not run through scripts/test.sh")
    assert transformers.__version__.startswith(expected), transformers.__version__


def test_library_does_not_need_torchvision():
    import subprocess
    import sys

    code = "import sys; sys.modules['torchvision'] = None; import stave, stave.cli; print('ok')"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() == "ok"
