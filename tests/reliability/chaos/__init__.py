"""The chaos run: notes through generator -> annotators -> trainer -> NER API while processes are SIGKILLed and the
broker restarts; at the end every note must be accounted for exactly once, from durable state.

Everything runs on this machine, each service as its own OS process through its production entry point (the specs of
:mod:`synthner.processes`, as ``synthner demo --processes`` starts them), under a
:class:`~synthner.supervisor.Supervisor` that restarts whatever ends. The broker is a private RabbitMQ node
(:class:`~synthner_shared.broker_node.PrivateRabbitMQ`), never the shared one, so it can be stopped and started
mid-run. The generator talks to the wire-compatible local LLM test server and the annotators are lexicon annotators:
the run tests the plumbing under faults, not the quality.

1. **Flow**: one generation job of ``notes`` notes is published; while it flows, a random service process (generator,
   each annotator, trainer, NER API) is SIGKILLed every ``kill_interval_s`` (each in turn, in a seeded random
   order), and the broker is restarted ``broker_restarts`` times as the store fills; around each broker restart no
   process is killed, and every service must report ready again and the store grow without any process having
   ended (a consumer that does not resume after a restart fails the run). The phase ends once every note
   is in the dataset store or a dead-letter queue (and every process was killed at least once), or when nothing has
   moved for ``stall_s`` (then some notes are lost, and the counts say how many).
2. **Model**: a training request; the trainer is killed once while it trains (the request runs again after the
   restart), the NER API once after the model is published (it must come back serving it); then ``POST /v1/ner``
   must answer with the published version.
3. **Accounting**, from durable state only (:mod:`.state`): the generator's dedup database (which note id each
   planned note index became), the trainer's dataset store (note ids stored, and how often), and every dead-letter
   queue and the failure/quarantine queues, drained and counted by reason. ``sent`` is the number of planned notes,
   ``duplicated`` counts note ids stored more than once plus stored notes that no planned index owns (a note
   regenerated as different text after a crash), ``lost = sent - stored - dead_lettered``.

No note text is printed or logged here: counts, ids' prefixes and reasons only. The harness is test code: it lives
with the tests (``tests/reliability/test_chaos*.py``) and ``benchmarks/chaos.py`` runs it at full size.
"""

from tests.reliability.chaos.result import ChaosFailed, ChaosOptions, ChaosResult, describe
from tests.reliability.chaos.run import run_chaos

__all__ = ["ChaosFailed", "ChaosOptions", "ChaosResult", "describe", "run_chaos"]
