"""``synthner demo``: the whole loop on this machine — generate, annotate, train, evaluate, publish, serve, report.

Every stage is the service's own handler built from its own settings class; only the transport differs
(:mod:`synthner.local_pipeline`). The run itself is :mod:`synthner.demo`. The last stdout line is
``f1=<strict micro F1 on the gold set> [f1_gold=<the teacher's>] seconds=<wall>``.
"""

from __future__ import annotations

import argparse
import sys
import time

from synthner.demo.options import DemoError, add_arguments, options_from


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="run the whole loop locally: LLM notes -> annotate -> train -> evaluate -> serve -> report.html",
        description=(
            "Run the whole pipeline on this machine with the embedded defaults. First a teacher: all-MiniLM-L6-v2\n"
            "fine-tuned on the real NCBI-disease train split (5 minutes at most). Then llama.cpp's server with\n"
            "SmolLM2-135M-Instruct continues the opening words of train-split abstracts (--mode label_conditioned:\n"
            "notes that name the train split's Disease mentions), the teacher labels the notes, a fresh\n"
            "all-MiniLM-L6-v2 is fine-tuned on the synthetic notes only, scored on the real NCBI-disease test set,\n"
            "published into a model store and served by the NER API (one sample request is shown), and\n"
            "report.html (with its figures as PNG files beside it) is written. The stages run over the local\n"
            "RabbitMQ when it is reachable, else in one process; --processes runs each service as its own OS\n"
            "process (its production entry point) over RabbitMQ. The last line is\n"
            "`f1=<the synthetic-only model's strict F1 on the test set> f1_gold=<the teacher's> seconds=<wall>`:\n"
            "the teacher is what real gold gives; the gap is what training on 120 synthetic notes costs (figures\n"
            "and run times: docs/results.md). The console shows the stages and progress; every log line goes to\n"
            "demo.log in the workdir.\n\n"
            "examples:\n  synthner demo --quick\n  synthner demo --workdir out/demo --notes 60 --in-process\n"
            "  synthner demo --quick --processes"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_arguments(parser)
    parser.set_defaults(handler=run_demo_command)


def run_demo_command(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    from synthner.demo.run import run_demo
    from synthner_shared.stopping import Stopped, run_stoppable

    try:
        options = options_from(args)
        # SIGTERM/SIGINT run the clean-up (the supervised service processes run in sessions of their own)
        final_line = run_stoppable(run_demo(options, started))
    except (DemoError, Stopped) as exc:
        print(f"synthner demo: {exc}", file=sys.stderr)
        return exc.exit_code
    print(final_line)  # the same line as in report.html and summary.json
    return 0
