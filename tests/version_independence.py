"""Which tests can depend on the transformers version, so that scripts/test.sh runs the others only once.

scripts/test.sh runs the suite on transformers 5.x and again, without the tests marked `version_independent`, on
transformers 4.57. A test may carry that mark only if it uses no transformers behaviour: this plugin counts every
construction of a transformers model, configuration, tokenizer, processor, Trainer or TrainingArguments and every
started subprocess (which may run anything), and fails a marked test whose run, fixtures (however scoped) or
module import did any of these. Tests that did none and are not marked are counted in the summary, so that a new
module's author sees what could be marked.
"""

from __future__ import annotations

import functools
import multiprocessing.process
import subprocess

import pytest
import transformers
from transformers.image_processing_base import ImageProcessingMixin
from transformers.processing_utils import ProcessorMixin
from transformers.tokenization_utils_base import PreTrainedTokenizerBase

MARK = "version_independent"
_uses = 0  # how many times transformers (or a subprocess) was used so far in this process


def _counting(method):
    @functools.wraps(method)
    def counted(*args, **kwargs):
        global _uses
        _uses += 1
        return method(*args, **kwargs)

    return counted


_WATCHED = {
    transformers.PreTrainedModel: "__init__",
    transformers.PretrainedConfig: "__init__",
    PreTrainedTokenizerBase: "__init__",
    ProcessorMixin: "__init__",
    ImageProcessingMixin: "__init__",  # image and video processors
    transformers.Trainer: "__init__",
    transformers.TrainingArguments: "__post_init__",
    subprocess.Popen: "__init__",
    multiprocessing.process.BaseProcess: "start",
}
for _cls, _name in _WATCHED.items():
    setattr(_cls, _name, _counting(getattr(_cls, _name)))

_dependent_fixtures: set[str] = set()
_dependent_modules: set[str] = set()
_unmarked_independent: list[str] = []


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", f"{MARK}: the test's outcome cannot depend on the transformers version")


@pytest.hookimpl(wrapper=True)
def pytest_make_collect_report(collector: pytest.Collector):
    before = _uses
    report = yield
    if isinstance(collector, pytest.Module) and _uses > before:
        _dependent_modules.add(collector.nodeid)
    return report


@pytest.hookimpl(wrapper=True)
def pytest_fixture_setup(fixturedef, request):
    before = _uses
    result = yield
    if _uses > before:
        _dependent_fixtures.add(fixturedef.argname)
    return result


def _uses_transformers(item: pytest.Item, since: int) -> list[str]:
    reasons = []
    if _uses > since:
        reasons.append("the test itself")
    fixtures = sorted(_dependent_fixtures.intersection(getattr(item, "fixturenames", ())))
    if fixtures:
        reasons.append(f"fixtures {fixtures}")
    module = item.nodeid.split("::")[0]
    if module in _dependent_modules:
        reasons.append(f"importing {module}")
    return reasons


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem):
    item.stash[_since_key] = _uses
    return (yield)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    report = yield
    if call.when != "call" or report.skipped:
        return report
    reasons = _uses_transformers(item, item.stash[_since_key])
    if item.get_closest_marker(MARK) is not None:
        if reasons and report.passed:
            report.outcome = "failed"
            report.longrepr = (
                f"{item.nodeid} is marked {MARK} but uses transformers or a subprocess ({'; '.join(reasons)}): "
                "its outcome may differ on transformers 4.57, where scripts/test.sh does not run it. Remove the mark."
            )
    elif not reasons:
        _unmarked_independent.append(item.nodeid)
    return report


def pytest_terminal_summary(terminalreporter) -> None:
    if _unmarked_independent:
        modules = sorted({nodeid.split("::")[0] for nodeid in _unmarked_independent})
        terminalreporter.write_line(
            f"{len(_unmarked_independent)} tests used no transformers code and are not marked {MARK} "
            f"(they run on every transformers version): in {', '.join(modules)}"
        )


_since_key = pytest.StashKey[int]()
