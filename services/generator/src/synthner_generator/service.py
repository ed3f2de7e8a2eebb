"""Binds the generator (and the job tracker) to RabbitMQ; :mod:`synthner_generator.app` puts them together."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from pathlib import Path

from synthner_generator.dedup import DedupStore
from synthner_generator.llm import LLMClient
from synthner_generator.llm.factory import build_client
from synthner_generator.pipeline import Generator, RetryPolicy
from synthner_generator.planning import JobContext
from synthner_generator.prompts import PromptCatalog
from synthner_generator.quality import QualityBounds
from synthner_generator.settings import GeneratorSettings
from synthner_generator.tracker import JobStore, Tracker, progress_key
from synthner_generator.vocabulary import load_vocabularies
from synthner_shared.contracts import GenerationProgress, GenerationRequested
from synthner_shared.documents import read_documents
from synthner_shared.leakgate import LeakGate
from synthner_shared.messaging import GENERATOR, JOB_PROGRESS, BrokerSettings, Consumer, Service
from synthner_shared.prefixes import PREFIX_FILTER, lowercase_vocabulary, safe_passage, safe_prefix

log = logging.getLogger(__name__)


def load_prefixes(path: Path, words: int) -> list[str]:
    """The opening words of each real note, cut before anything that may identify someone; nothing else of the notes
    is kept in memory. Prefixes that ``synthner adapt`` already cut (``prefix_filter`` set) are taken as they are;
    whole notes are cut here, with the vocabulary of the file's notes."""
    documents = list(read_documents(path))
    vocabulary = lowercase_vocabulary(d.text for d in documents if (d.model_extra or {}).get("prefix_filter") is None)
    prefixes = []
    for document in documents:
        if (document.model_extra or {}).get("prefix_filter") == PREFIX_FILTER:
            prefix = " ".join(document.text.split()[:words])
        else:
            prefix = safe_prefix(document.text, words, vocabulary)
        if prefix:
            prefixes.append(prefix)
    return prefixes


def load_passages(path: Path, words: int) -> list[str]:
    """Up to ``words`` words of each whole real note's sentences with nothing flagged as identifying
    (:func:`safe_passage`); notes with fewer than half as many such words are left out. Prefix-only documents
    (``prefix_filter`` set) give none."""
    documents = [d for d in read_documents(path) if (d.model_extra or {}).get("prefix_filter") is None]
    vocabulary = lowercase_vocabulary(d.text for d in documents)
    passages = (safe_passage(d.text, words, vocabulary) for d in documents)
    return [passage for passage in passages if 2 * len(passage.split()) >= words]


def job_context(settings: GeneratorSettings) -> JobContext:
    prefixes = load_prefixes(settings.prefix_file, settings.prefix_words) if settings.prefix_file else None
    passages: list[str] = []
    if settings.prefix_file and settings.passage_words:
        passages = load_passages(settings.prefix_file, settings.passage_words)
        if not passages:
            raise ValueError(
                f"passage_words is {settings.passage_words}, but no note of the prefix file has half as many words "
                "in sentences without identifiers: set it lower, or 0 for prefixes alone"
            )
    return JobContext(
        catalog=PromptCatalog(settings.prompt_dir),
        vocabularies=load_vocabularies(settings.vocabulary_dir),
        known_labels=settings.labels,
        external_endpoint=settings.external_endpoint,
        prefixes=prefixes,
        entities_per_label=settings.entities_per_label,
        prefix_words=settings.prefix_words,
        passages=passages,
    )


@contextlib.asynccontextmanager
async def build_generator(settings: GeneratorSettings, llm: LLMClient | None = None) -> AsyncIterator[Generator]:
    """The generator with its long-lived resources (LLM client, dedup database), closed on exit."""
    client = llm if llm is not None else build_client(settings)
    dedup = DedupStore(settings.state_dir / "dedup.sqlite3", settings.near_duplicate_threshold)
    try:
        yield Generator(
            client,
            job_context(settings),
            dedup=dedup,
            gate=LeakGate.load(settings.leak_reference, settings.leak_min_run_tokens, settings.leak_max_overlap),
            bounds=QualityBounds(settings.min_chars, settings.max_chars, settings.truncated),
            retry=RetryPolicy(settings.llm_attempts, settings.llm_backoff_s, settings.regenerate_rejected),
            producer=settings.producer,
            concurrency=settings.concurrency,
            part_size=settings.part_size,
            split_fanout=settings.split_fanout,
        )
    finally:
        dedup.close()
        if llm is None:
            await client.aclose()


def generator_service(broker: BrokerSettings, settings: GeneratorSettings, generator: Generator) -> Service:
    if broker.prefetch * settings.part_size < settings.concurrency:
        log.warning(
            "prefetch %d x part_size %d < concurrency %d: fewer LLM requests than allowed will be in flight",
            broker.prefetch,
            settings.part_size,
            settings.concurrency,
        )
    consumer = Consumer(GENERATOR, (GenerationRequested,), generator.handle)
    return Service(broker, settings.producer, [consumer])


def tracker_service(broker: BrokerSettings, settings: GeneratorSettings, store: JobStore) -> Service:
    consumer = Consumer(JOB_PROGRESS, (GenerationProgress,), Tracker(store).handle, idempotency_key=progress_key)
    return Service(broker, f"synthner-tracker/{settings.instance}", [consumer])
