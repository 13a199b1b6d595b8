"""`python -m infertune.search.worker`: one trial in a fresh process (see `bench.isolated.run_worker`)."""

from __future__ import annotations

import sys


def trial(job: dict, say) -> dict:
    """A process entry point, like the command line: it resolves the trial's specs, then runs the trial."""
    from infertune.resolver import resolve_job
    from infertune.search.trial import TrialJob, run_trial

    job = TrialJob(**job)
    model, dataset = resolve_job(job.model, job.data)
    return run_trial(job, model, dataset, say=say).to_dict()  # the record crosses the process as a dict


def first_line(error: Exception) -> str:
    return f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"


if __name__ == "__main__":
    from infertune.bench.isolated import worker_main

    sys.exit(worker_main(trial, describe=first_line))
