"""Broker throughput: synthner's publisher + consumer runner against plain aio-pika with confirms, in one run.

N annotated documents (about 2 kB of text with 20 spans each) go end to end through a durable quorum queue with
persistent messages and publisher confirms, both ways:

- ours:  ``Publisher.publish_many`` (pydantic serialisation, confirms) -> ``Service``/``ConsumerRunner`` (decode and
  validate every message, idempotency check, handler, ack);
- plain: ``exchange.publish`` of pre-serialised bodies with confirms -> an aio-pika consumer that only acks.

Both use the same publish window (messages awaiting confirms at once) and the same prefetch. Rounds alternate the
two to spread noise; the median round of each is reported. The last line is ``ratio=<ours/plain> ...``.

    python benchmarks/broker_throughput.py --count 2000 --rounds 3
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
import uuid
from collections.abc import Sequence

import aio_pika
from aio_pika.abc import AbstractIncomingMessage

from synthner_shared.contracts import DocumentAnnotated, Envelope
from synthner_shared.messaging import TRAINER, BrokerSettings, Consumer, Service, Topology
from synthner_shared.testing import running_service, sample_annotated


def documents(count: int) -> list[DocumentAnnotated]:
    return [sample_annotated(seed=i) for i in range(count)]


async def run_ours(url: str, docs: list[DocumentAnnotated], window: int, prefetch: int) -> float:
    settings = BrokerSettings(url=url, namespace=f"bench-{uuid.uuid4().hex[:10]}", prefetch=prefetch)
    received = 0
    done = asyncio.Event()

    async def handle(document: DocumentAnnotated) -> Sequence[Envelope]:
        nonlocal received
        received += 1
        if received == len(docs):
            done.set()
        return []

    service = Service(settings, "bench-consumer", [Consumer(TRAINER, (DocumentAnnotated,), handle)])
    async with running_service(service):
        publisher = service.broker.publisher
        started = time.perf_counter()
        for offset in range(0, len(docs), window):
            await publisher.publish_many(docs[offset : offset + window])
        await asyncio.wait_for(done.wait(), timeout=600)
        elapsed = time.perf_counter() - started
    await delete_namespace(url, service.broker.topology)
    return elapsed


async def delete_namespace(url: str, topology: Topology) -> None:
    connection = await aio_pika.connect(url)
    try:
        await topology.delete(await connection.channel())
    finally:
        await connection.close()


async def run_plain(url: str, bodies: list[bytes], window: int, prefetch: int) -> float:
    connection = await aio_pika.connect_robust(url)
    name = f"bench-plain-{uuid.uuid4().hex[:10]}"
    try:
        publish_channel = await connection.channel(publisher_confirms=True)
        consume_channel = await connection.channel()
        await consume_channel.set_qos(prefetch_count=prefetch)
        exchange = await publish_channel.declare_exchange(name, aio_pika.ExchangeType.TOPIC, durable=True)
        queue = await consume_channel.declare_queue(name, durable=True, arguments={"x-queue-type": "quorum"})
        await queue.bind(name, "document.annotated")
        received = 0
        done = asyncio.Event()

        async def on_message(message: AbstractIncomingMessage) -> None:
            nonlocal received
            await message.ack()
            received += 1
            if received == len(bodies):
                done.set()

        consumer_tag = await queue.consume(on_message)
        started = time.perf_counter()
        for offset in range(0, len(bodies), window):
            await asyncio.gather(
                *(
                    exchange.publish(
                        aio_pika.Message(body, delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
                        "document.annotated",
                    )
                    for body in bodies[offset : offset + window]
                )
            )
        await asyncio.wait_for(done.wait(), timeout=600)
        elapsed = time.perf_counter() - started
        await queue.cancel(consumer_tag)
        await queue.delete(if_unused=False, if_empty=False)
        await exchange.delete()
        return elapsed
    finally:
        await connection.close()


async def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=2000, help="documents per round (default 2000)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of each variant, alternating (default 3)")
    parser.add_argument("--window", type=int, default=100, help="publishes awaiting confirms at once (default 100)")
    parser.add_argument("--prefetch", type=int, default=100, help="consumer prefetch (default 100)")
    parser.add_argument("--amqp-url", default=None, help="broker URL (default: AMQP_URL or the local broker)")
    args = parser.parse_args(argv)
    url = args.amqp_url or BrokerSettings().url.get_secret_value()

    docs = documents(args.count)
    bodies = [d.model_dump_json().encode() for d in docs]
    size = statistics.mean(len(b) for b in bodies)
    spans = statistics.mean(len(d.entities) for d in docs)
    text_chars = statistics.mean(len(d.text) for d in docs)
    print(f"{args.count} documents: {text_chars:.0f} characters of text, {spans:.0f} spans, {size:.0f} bytes each")

    ours_times: list[float] = []
    plain_times: list[float] = []
    for round_number in range(1, args.rounds + 1):
        plain_times.append(await run_plain(url, bodies, args.window, args.prefetch))
        ours_times.append(await run_ours(url, docs, args.window, args.prefetch))
        print(
            f"round {round_number}: plain {args.count / plain_times[-1]:8.0f} msg/s   "
            f"ours {args.count / ours_times[-1]:8.0f} msg/s",
            flush=True,
        )
    ours_rate = args.count / statistics.median(ours_times)
    plain_rate = args.count / statistics.median(plain_times)
    print(f"median: plain aio-pika {plain_rate:.0f} msg/s, synthner publisher+runner {ours_rate:.0f} msg/s")
    print(f"ratio={ours_rate / plain_rate:.2f} ours_msg_per_s={ours_rate:.0f} plain_msg_per_s={plain_rate:.0f}")


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1:]))
