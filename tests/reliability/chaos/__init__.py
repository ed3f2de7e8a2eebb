"""The chaos run: notes through generator -> annotators -> trainer -> NER API while processes are SIGKILLed, one is
sent SIGTERM, and the broker restarts and crashes; at the end every note must be accounted for exactly once, from
durable state and from what each process recorded doing.

Everything runs on this machine, each service as its own OS process under a :class:`~synthner.supervisor.Supervisor`
that restarts whatever ends. The stages run their production composition roots through the harness's wrapper entry
point (:mod:`.wrapped`), which records every handling (ids only) and can carry a planted fault; the NER API runs its
own entry point. The broker is a private RabbitMQ node (:class:`~synthner_shared.broker_node.PrivateRabbitMQ`), never
the shared one, so it can be stopped, killed and started mid-run. The generator talks to the wire-compatible local
LLM test server and the annotators are lexicon annotators given an LLM-like latency: the run tests the plumbing under
faults, not the quality.

1. **Drain**: once the job flows, an annotator that holds notes in flight gets SIGTERM (no SIGKILL meanwhile): it
   must finish what it started, exit 0, and none of the messages it finished may be handled again.
2. **Flow**: a random service process is SIGKILLed every ``kill_interval_s``; every other kill waits until some
   process holds work in flight (its records show a handling started and not finished: a delivery not yet acked)
   and kills it, the others take each process in turn. The broker is restarted gracefully ``broker_restarts`` times
   and crashed (SIGKILL of its Erlang VM) ``broker_crashes`` times as the store fills; around each outage no process
   is killed, and every service must report ready again and the store grow without any process having ended. The
   phase ends once every note is in the dataset store or a dead-letter queue (or nothing is queued, retried or in
   flight for ``settle_s``), every outage was done and every process was killed at least once; or when nothing has
   moved for ``stall_s``.
3. **Model**: a training request; the trainer is killed once while it trains, the NER API once after the model is
   published; then ``POST /v1/ner`` must answer with the published version.
4. **Accounting** (:mod:`.state`, :mod:`.records`): ``sent`` planned notes, each ``stored``, ``dead_lettered`` or
   ``lost``; every dead letter's reason must be on the run's allow-list (empty by default); ``duplicated`` counts
   repeated handlings the records do not explain (a redelivery after a SIGKILL or a broker outage, a re-publication
   upstream) plus stored notes no planned note owns; ``redeliveries`` counts messages a SIGKILLed process held in
   flight that were handled again, and must be above 0, as must the kills that hit work in flight.

No note text is printed, logged or recorded here: counts, ids and reasons only. The harness is test code: it lives
with the tests (``tests/reliability/test_chaos*.py``) and ``benchmarks/chaos.py`` runs it at full size. Import
:func:`tests.reliability.chaos.run.run_chaos` and the types of :mod:`.result` from their modules: this package
imports nothing, so the wrapper entry point loads only what its stage needs.
"""
