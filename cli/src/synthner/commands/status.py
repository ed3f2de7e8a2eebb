"""``synthner status JOB``: a job's progress, as the job tracker recorded it."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "status",
        help="show a generation job's progress",
        description="Show requested / generated / rejected / quarantined / failed counts of a generation job, from "
        "the job tracker's database (python -m synthner_generator tracker).",
    )
    parser.add_argument("job_id", help="the job id printed by `synthner generate`")
    parser.add_argument(
        "--db", type=Path, default=None, help="tracker database (default SYNTHNER_GENERATOR_TRACKER_DB)"
    )
    parser.set_defaults(handler=run_status)


def run_status(args: argparse.Namespace) -> int:
    from synthner_generator.settings import GeneratorSettings
    from synthner_generator.tracker import JobStore

    path = args.db or GeneratorSettings().tracker_db
    if not path.exists():
        print(f"synthner: no tracker database at {path} (is the tracker running?)", file=sys.stderr)
        return 2
    store = JobStore(path)
    try:
        status = store.status(args.job_id)
    finally:
        store.close()
    if status.state == "unknown":
        print(f"job {args.job_id}: unknown (not submitted, not yet seen, or dead-lettered as invalid)")
        return 1
    print(f"job {status.job_id}: {status.state}" + (f" ({status.reason})" if status.reason else ""))
    print(
        f"  requested {status.requested}  finished {status.finished}  generated {status.generated}  "
        f"rejected {status.rejected}  duplicates {status.duplicates}  quarantined {status.quarantined} "
        f"({status.quarantined_share:.1%})  failed {status.failed}"
    )
    return 0
