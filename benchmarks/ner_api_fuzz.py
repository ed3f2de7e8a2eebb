"""Fuzz the NER API with schemathesis: N generated requests (schema-valid and schema-violating bodies, with a user
key, an admin key, a wrong key or none) against every operation of its OpenAPI, in process over ASGI, with the
lexicon test model in a fresh model store. Every answer must be free of 5xx and match the declared status codes,
content type, headers and response schema.

The last line is ``cases=… failures=… server_errors=… seconds=…``; the failed checks (if any) are listed above it.

    python benchmarks/ner_api_fuzz.py [--cases 1000] [--seed 1]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from synthner_ner_api.app import create_app
from synthner_ner_api.models import ModelRegistry
from synthner_ner_api.testing import fuzz_api, lexicon_api_settings, load_lexicon_model


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", type=int, default=1_000, help="generated requests to send (default 1000)")
    parser.add_argument("--seed", type=int, default=None, help="hypothesis seed (default: derandomized)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as folder:
        settings = lexicon_api_settings(Path(folder))
        app = create_app(settings, ModelRegistry(load_lexicon_model, store=settings.model_store))
        started = time.perf_counter()
        report = fuzz_api(app, args.cases, seed=args.seed)
        seconds = time.perf_counter() - started
    for status, count in sorted(report.statuses.items()):
        print(f"status {status}: {count}")
    for failure in report.failures:
        print(f"FAILED {failure}")
    print(f"{report.summary()} seconds={seconds:.1f}")
    return 1 if report.failures or report.server_errors else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
