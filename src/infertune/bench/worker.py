"""`python -m infertune.bench.worker`: one measurement in a fresh process (see `isolated.run_worker`)."""

from __future__ import annotations

import sys


def measure(job: dict, say) -> dict:
    from infertune.bench.job import BenchJob, run_job

    result = run_job(BenchJob.from_dict(job), progress=say)
    result.isolated = True
    return result.to_dict()


if __name__ == "__main__":
    from infertune.bench.isolated import worker_main

    sys.exit(worker_main(measure))
