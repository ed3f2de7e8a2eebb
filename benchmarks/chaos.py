"""Chaos run: N notes through generator -> annotators -> trainer -> NER API while service processes are SIGKILLed
(timed to hit work in flight), an annotator is sent SIGTERM while it holds notes, and a private RabbitMQ node is
restarted and crashed; every note must end in the dataset store, handled once at each stage (or redelivered for a
reason the run saw), with no dead letter.

Each service runs as its own process under a supervisor that restarts it: the stages through the harness's wrapper
entry point (their production composition roots, with every handling recorded by id), the NER API through its own;
the broker is a RabbitMQ node of this run's own (never the shared one on 5672); the generator talks to the local
wire-compatible LLM test server and the annotators use a lexicon with an LLM-like latency, so the run measures the
plumbing, not the quality. See ``tests/reliability/chaos`` for the phases and how the counts are taken. No data files
are needed.

The last line is ``sent=… stored=… dead_lettered=… duplicated=… lost=… redeliveries=… kills=… broker_crashes=…
seconds=…``; the lines before it name every problem found. The exit code is 0 only when nothing was lost or
duplicated, no dead letter has a reason outside ``--allow-dead-letter``, some SIGKILL hit work in flight and that work
was redelivered, every broker restart and crash was done, the SIGTERM drain finished its work without a redelivery,
and the NER API answered with the published model; 1 otherwise.

``--plant-fault drop`` (the annotators drop 5 % of the notes after acking them) or ``--plant-fault raise`` (they raise
on 20 % of the notes) is the run's self-test: it must exit 1.

SIGTERM or SIGINT (``timeout``, CI, Ctrl-C) stops the run the way it ends normally: every service process is sent
SIGTERM, then SIGKILL after the grace period, the private RabbitMQ node is stopped (killed if it was still starting),
the temporary workdir is removed (a ``--workdir`` is kept), and the harness exits with 128 + the signal's number
(143 for SIGTERM, 130 for SIGINT) after one line on stderr: ``chaos: stopped by SIGTERM``.

    python benchmarks/chaos.py [--notes 1000] [--seed 7] [--kill-interval 4] [--broker-restarts 1]
        [--broker-crashes 1] [--plant-fault drop|raise]
"""

from __future__ import annotations

import argparse
import logging
import shutil
import sys
import tempfile
from pathlib import Path

from synthner_shared.broker_node import BrokerNodeError
from synthner_shared.stopping import Stopped, run_stoppable

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the harness is test code, in the repository's tests/
from tests.reliability.chaos.result import ChaosFailed, ChaosOptions, describe
from tests.reliability.chaos.run import run_chaos


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--notes", type=int, default=1000, help="notes in the generation job (default 1000)")
    parser.add_argument("--seed", type=int, default=7, help="seeds the notes and the kill schedule")
    parser.add_argument("--kill-interval", type=float, default=4.0, help="mean seconds between two SIGKILLs")
    parser.add_argument("--broker-restarts", type=int, default=1, help="graceful RabbitMQ restarts during the flow")
    parser.add_argument("--broker-crashes", type=int, default=1, help="RabbitMQ crashes (SIGKILL) during the flow")
    parser.add_argument("--no-drain", action="store_true", help="skip the SIGTERM drain of an annotator")
    parser.add_argument("--annotators", type=int, default=2, help="annotator processes (competing consumers)")
    parser.add_argument("--part-size", type=int, default=10, help="notes per generation part (one delivery)")
    parser.add_argument("--llm-latency", type=float, default=0.1, help="seconds the LLM test server takes a request")
    parser.add_argument("--annotate-latency", type=float, default=0.2, help="seconds an annotator takes a note")
    parser.add_argument(
        "--allow-dead-letter",
        action="append",
        default=[],
        metavar="REASON",
        help="a dead-letter reason (prefix) the run accepts; repeatable (default: none)",
    )
    parser.add_argument(
        "--plant-fault",
        choices=("drop", "raise"),
        help="self-test: the annotators drop 5%% of the notes after acking, or raise on 20%%; the run must fail",
    )
    parser.add_argument("--train-documents", type=int, default=200, help="documents the model is trained on")
    parser.add_argument("--epochs", type=float, default=1.0)
    parser.add_argument("--deadline", type=float, default=1500.0, help="seconds before the run gives up")
    parser.add_argument("--stall", type=float, default=120.0, help="seconds without progress that end the flow")
    parser.add_argument(
        "--workdir",
        type=Path,
        help="where logs, stores and the broker's data go (default: a temporary folder, removed after a clean run)",
    )
    args = parser.parse_args(argv)
    if args.notes < 1 or args.kill_interval <= 0 or min(args.broker_restarts, args.broker_crashes) < 0:
        parser.error("--notes must be positive, --kill-interval > 0, --broker-restarts and --broker-crashes >= 0")
    if args.annotators < 1 or args.annotate_latency < 0:
        parser.error("--annotators must be positive, --annotate-latency >= 0")
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="synthner-chaos-"))
    options = ChaosOptions(
        workdir=workdir,
        notes=args.notes,
        seed=args.seed,
        kill_interval_s=args.kill_interval,
        broker_restarts=args.broker_restarts,
        broker_crashes=args.broker_crashes,
        sigterm_drain=not args.no_drain,
        annotators=args.annotators,
        part_size=args.part_size,
        llm_latency_s=args.llm_latency,
        annotate_latency_s=args.annotate_latency,
        allowed_dead_letters=tuple(args.allow_dead_letter),
        plant_fault=args.plant_fault,
        train_documents=args.train_documents,
        epochs=args.epochs,
        deadline_s=args.deadline,
        stall_s=args.stall,
    )
    # This process's own broker connection reconnects through the broker restarts; aio-pika reports every attempt.
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    for noisy in ("aio_pika", "aiormq"):
        logging.getLogger(noisy).setLevel(logging.CRITICAL)
    planted = f", planted fault: {args.plant_fault}" if args.plant_fault else ""
    print(f"chaos run: {args.notes} notes, workdir {workdir}{planted}", flush=True)
    try:
        result = run_stoppable(run_chaos(options))  # SIGTERM/SIGINT: the run's own clean-up, then Stopped
    except Stopped as exc:
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)  # every process that wrote there has ended
        cause = f" (while stopping: {type(exc.__cause__).__name__}: {exc.__cause__})" if exc.__cause__ else ""
        print(f"chaos: {exc}{cause}", file=sys.stderr)
        return exc.exit_code
    except (ChaosFailed, BrokerNodeError) as exc:
        print(f"chaos: {exc}", file=sys.stderr)
        return 2
    for line in describe(result):
        print(line)
    if args.workdir is None and (result.ok or args.plant_fault):
        # ~100 MB of broker data and models; kept when something failed (unless a planted fault made it fail)
        shutil.rmtree(workdir, ignore_errors=True)
    print(result.line())
    return 0 if result.ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
