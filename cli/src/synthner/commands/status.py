"""``synthner status [JOB]``: a job's progress (or every job's), as the job tracker recorded it."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from synthner_generator.tracker import JobStatus


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "status",
        help="show a generation job's progress (or every job's)",
        description="Show requested / generated / rejected / quarantined / failed counts of a generation job (without "
        "JOB: of every job), from the job tracker's database (python -m synthner_generator tracker). In a cluster: "
        "kubectl exec deploy/tracker -- synthner status [JOB].",
    )
    parser.add_argument("job_id", nargs="?", default=None, help="the job id printed by `synthner generate`")
    parser.add_argument("--json", action="store_true", help="one JSON object per job")
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
        job_ids = [args.job_id] if args.job_id is not None else store.job_ids()
        statuses = [store.status(job_id) for job_id in job_ids]
    finally:
        store.close()
    for status in statuses:
        _print(status, args.json)
    if args.job_id is None and not statuses and not args.json:
        print("no jobs yet")
    return 1 if any(status.state == "unknown" for status in statuses) else 0


def _print(status: JobStatus, as_json: bool) -> None:
    if as_json:
        fields = {**asdict(status), "finished": status.finished, "quarantined_share": status.quarantined_share}
        print(json.dumps(fields))
        return
    if status.state == "unknown":
        print(f"job {status.job_id}: unknown (not submitted, not yet seen, or dead-lettered as invalid)")
        return
    print(f"job {status.job_id}: {status.state}" + (f" ({status.reason})" if status.reason else ""))
    print(
        f"  requested {status.requested}  finished {status.finished}  generated {status.generated}  "
        f"rejected {status.rejected}  duplicates {status.duplicates}  quarantined {status.quarantined} "
        f"({status.quarantined_share:.1%})  failed {status.failed}"
    )
