"""A real Ray cluster of two nodes (a head and a worker, one CPU each, both at 127.0.0.1) for the checks of this
folder, which run only inside the loopback-only network namespace that tests/cluster/test_on_ray.py makes."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
TEXTS = 3000  # rows of the predict checks: enough batches for both actors, and to kill one mid-job
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session", autouse=True)
def isolated_cache(tmp_path_factory):
    if os.environ.get("INFERTUNE_IN_NETNS") != "1":
        pytest.fail("tests/cluster/on_ray runs only inside a loopback-only network namespace: run "
                    "tests/cluster/test_on_ray.py")
    os.environ["INFERTUNE_CACHE_DIR"] = str(tmp_path_factory.mktemp("infertune-cache"))


@pytest.fixture(scope="session")
def cluster():
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    os.environ["RAY_ADDRESS"] = cluster.address  # what `ray.init()` of a check joins
    yield cluster
    cluster.shutdown()


def cli(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "infertune.cli", *args], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "COLUMNS": "200"})


@pytest.fixture(scope="session")
def texts(tmp_path_factory) -> Path:
    """TEXTS real English texts (standard-library docstring sentences, paired past the first pass) as .jsonl."""
    import json

    from infertune.data.docstrings import docstring_sentences

    sentences = docstring_sentences()
    rows = [sentences[i % len(sentences)] + ("" if i < len(sentences) else " " + sentences[(7 * i) % len(sentences)])
            for i in range(TEXTS)]
    path = tmp_path_factory.mktemp("texts") / "texts.jsonl"
    path.write_text("".join(json.dumps({"text": t}) + "\n" for t in rows))
    return path
