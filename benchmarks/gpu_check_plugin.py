"""pytest plugin for benchmarks/gpu_check.sh (loaded with -p benchmarks.gpu_check_plugin).

- Each test gets GPU_CHECK_TEST_SECONDS (default 90): past that, every
  thread's traceback goes to the progress file and the process exits, so a
  hung kernel costs one test's limit, not the whole stage (gpu_check.sh then
  reruns the tests that did not run).
- Every test's start and outcome are appended to GPU_CHECK_PROGRESS as they
  happen (the record survives a hang, unlike the JUnit file).
- A skipped test is reported as a failure: on the device machine a skip
  means the module or the device went missing, which is what the run must
  find out.
"""
from __future__ import annotations

import faulthandler
import os

import pytest

_LIMIT = float(os.environ.get("GPU_CHECK_TEST_SECONDS", "90"))
_PATH = os.environ.get("GPU_CHECK_PROGRESS")
_file = open(_PATH, "a", buffering=1) if _PATH else None


def _log(line: str) -> None:
    if _file is not None:
        _file.write(line + "\n")
        _file.flush()
        os.fsync(_file.fileno())


def pytest_runtest_logstart(nodeid, location):
    _log(f"START {nodeid}")
    if _file is not None:
        faulthandler.dump_traceback_later(_LIMIT, exit=True, file=_file)


def pytest_runtest_logfinish(nodeid, location):
    faulthandler.cancel_dump_traceback_later()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.skipped and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.outcome = "failed"
        report.longrepr = f"skipped on the device machine (gpu_check counts a skip as a failure): {reason}"
    if report.when == "call" or report.outcome != "passed":
        _log(f"{report.outcome.upper()} {report.nodeid} {report.duration:.1f}s")
