"""What operators see of a running service: Prometheus metrics (``metrics``), OpenTelemetry traces (``tracing``) and
LLM-call observation (``llm``). ``durations`` is the plain histogram the consumer runner keeps (no Prometheus in it).

Nothing here ever carries note text, entity strings or secrets: labels are queues, outcomes, client names and error
types; span attributes are ids, queue names and routing keys.
"""
