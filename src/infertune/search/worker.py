"""`python -m infertune.search.worker JOB.json RESULT.json`: one trial in a fresh process."""

from __future__ import annotations

import json
import sys
import traceback
from pathlib import Path


def main(argv: list[str]) -> int:
    """A process entry point, like the command line: it resolves the trial's specs, then runs the trial."""
    from infertune.io import write_json_atomic
    from infertune.resolver import resolve_job
    from infertune.search.trial import TrialJob, run_trial

    job = TrialJob(**json.loads(Path(argv[0]).read_text()))
    try:
        model, dataset = resolve_job(job.model, job.data)
        result = run_trial(job, model, dataset, say=lambda stage: print(f"@stage {stage}", flush=True))
    except Exception as e:
        traceback.print_exc(file=sys.stderr)
        write_json_atomic(argv[1], {"error": f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"})
        return 1
    write_json_atomic(argv[1], result)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
