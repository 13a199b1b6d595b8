"""The Ray tests, run on a real two-node cluster inside a network namespace that holds only loopback, so no Ray
process can listen on or reach any other address. This module re-executes `tests/cluster/on_ray` there once (one
cluster for all of them) and reports each check it ran as a test of its own."""

import os
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import pytest

HERE = Path(__file__).parent / "on_ray"
CHECKS = [(path.stem, line.split("(")[0][4:])
          for path in sorted(HERE.glob("check_*.py"))
          for line in path.read_text().splitlines() if line.startswith("def check_")]


def _namespace_command() -> list[str]:
    if shutil.which("unshare") is None or shutil.which("ip") is None:
        pytest.fail("the Ray tests need `unshare` and `ip` (util-linux, iproute2) to confine Ray to loopback")
    as_root = [] if os.geteuid() == 0 else ["--map-root-user"]
    return ["unshare", "--net", *as_root, "sh", "-c", 'ip link set lo up && exec "$@"', "sh"]


@pytest.fixture(scope="module")
def inner_results(tmp_path_factory) -> dict[str, tuple[str, str]]:
    report = tmp_path_factory.mktemp("on-ray") / "junit.xml"
    command = [*_namespace_command(), sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
               "-o", "python_functions=check_*", "-o", "python_files=check_*.py", "--rootdir", str(HERE), "--confcutdir", str(HERE),
               f"--junitxml={report}", str(HERE)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=1200,
                          env={**os.environ, "INFERTUNE_IN_NETNS": "1", "COLUMNS": "200"})
    print(done.stdout[-20000:], done.stderr[-5000:])
    if not report.exists():
        pytest.fail(f"the Ray tests did not run (exit {done.returncode}):\n{done.stdout[-5000:]}\n{done.stderr[-3000:]}")
    results = {}
    for case in ElementTree.parse(report).getroot().iter("testcase"):
        problem = next(iter(case), None)
        outcome = "passed" if problem is None or problem.tag == "system-out" else problem.tag
        results[f"{case.get('classname').split('.')[-1]}::{case.get('name')}"] = (
            outcome, (problem.get("message") or "") + "\n" + (problem.text or "") if problem is not None else "")
    return results


@pytest.mark.slow
@pytest.mark.parametrize("module,name", CHECKS, ids=[f"{m}::{n}" for m, n in CHECKS])
def test_on_ray(inner_results, module, name):
    outcome, detail = inner_results.get(f"{module}::{name}", ("not run", "the check did not report"))
    if outcome == "skipped":
        pytest.skip(detail)
    assert outcome == "passed", f"{module}::{name} {outcome}:\n{detail}"
