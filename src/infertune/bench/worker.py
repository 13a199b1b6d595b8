"""`python -m infertune.bench.worker JOB.json RESULT.json`: one measurement in a fresh process."""

from __future__ import annotations

import json
import sys
import traceback
from pathlib import Path


def main(argv: list[str]) -> int:
    """A process entry point, like the command line: it resolves the job's specs, then measures."""
    from infertune.bench.job import BenchJob, run_job
    from infertune.io import write_json_atomic
    from infertune.resolver import resolve_job

    job_path, result_path = Path(argv[0]), Path(argv[1])
    job = BenchJob.from_dict(json.loads(job_path.read_text()))
    try:
        model, dataset = resolve_job(job.model, job.data, job.onnx_path)
        result = run_job(job, model=model, split=dataset.split("heldout") if dataset is not None else None,
                         data_name=dataset.name if dataset is not None else None,
                         progress=lambda stage: print(f"@stage {stage}", flush=True))
    except Exception as e:
        traceback.print_exc(file=sys.stderr)
        write_json_atomic(result_path, {"error": f"{type(e).__name__}: {e}"})
        return 1
    result.isolated = True
    write_json_atomic(result_path, result.to_dict())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
