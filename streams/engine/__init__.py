"""The stream engine: runs a stream's graph of nodes over batches of records.

- ``plan``: the runner (``plan_build`` from the stored nodes and edges with the node registry's
  typed configs, ``plan_execute`` node by node in topological order, set-based per node).
- ``runtimes``: what each node type does with a batch; ``conditions`` (filter and guiding-rule
  predicates), ``cel`` (CEL via celpy, compiled once per expression), ``keys`` (session and
  deduplication keys: ``session_key`` is shared with the session lookup endpoint), ``records``
  (field paths, copy-on-write).
- State: ``dedup`` (deduplication keys), ``sessions`` and ``stores`` (aggregation stores and
  sessions), ``inspect`` (the inspect node's last records).
- ``services``: runs (``stream_run_execute``, ``stream_run_collected``), the session-timeout
  sweep, previews; ``selectors``: the session lookup.
- Seams to apps built in parallel: ``metering_seam`` (the usage ledger), ``collection_seam`` (the
  online collection log), ``outbound`` (the SSRF-safe HTTP client of notifications).
"""
