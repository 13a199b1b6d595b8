"""`python -m infertune.bench.worker`: one measurement in a fresh process (see `isolated.run_worker`)."""

from __future__ import annotations

import sys


def measure(job: dict, say) -> dict:
    """A process entry point, like the command line: it resolves the job's specs, then measures."""
    from infertune.bench.job import BenchJob, run_job
    from infertune.resolver import resolve_job

    job = BenchJob.from_dict(job)
    model, dataset = resolve_job(job.model, job.data, job.onnx_path)
    result = run_job(job, model=model, split=dataset.split("heldout") if dataset is not None else None,
                     data_name=dataset.name if dataset is not None else None, progress=say)
    result.isolated = True
    return result.to_dict()


if __name__ == "__main__":
    from infertune.bench.isolated import worker_main

    sys.exit(worker_main(measure))
