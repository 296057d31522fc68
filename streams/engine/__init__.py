"""The stream engine: runs a stream's graph of nodes over batches of records.

Its modules, each importing only the ones listed before it (no import cycles):

- Building blocks: ``context`` (the run a node sees, ``NodeOutput``, ``NodeFailed``), ``records``
  (field paths, copy-on-write), ``keys`` (session and deduplication keys: ``session_key`` is
  shared with the session lookup endpoint), ``conditions`` (filter and guiding-rule predicates),
  ``cel`` (CEL via celpy, compiled once per expression), ``outbound`` (the SSRF-safe HTTP client
  of notifications), ``schedules`` (batch streams' beat entries), ``task_queue`` (the app's Celery tasks by name: the engine never imports
  ``streams.tasks``, which imports it).
- State and the other apps: ``dedup`` (deduplication keys), ``stores`` and ``sessions``
  (aggregation stores and sessions), ``inspect`` (the inspect node's last records),
  ``flushes`` (the outbox of flushed metered records), ``deliveries`` (the outputs' outbox),
  ``metering_seam`` (the Meter processor's records into the usage ledger), ``collection_seam``
  (the online collection log).
- ``runtimes``: what each node type does with a batch; ``plan``: the runner (``plan_build`` from
  the stored nodes and edges with the node registry's typed configs, ``plan_execute`` node by node
  in topological order, set-based per node); ``corrections``: a stream's data correction
  reprocessed through its meter node.
- ``services``: runs (``stream_run_execute``, ``stream_run_collected``), flush deliveries, the
  session-timeout sweep, previews; ``selectors``: the session lookup, realtime streams behind
  their collectors.
- ``wiring``: the hooks collection and metering call (registered in ``StreamsConfig.ready``).
"""
