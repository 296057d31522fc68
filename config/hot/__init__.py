"""The hot paths' serving layer: one route table, one pipeline, a WSGI and an ASGI adapter.

See ``config.hot.table`` (the table and what is derived from it), ``config.hot.pipeline`` (the
pipeline), ``config.hot.django`` (the view and the lean Django handlers), ``config.hot.loop``
(the event loop), and docs/DEVELOPING.md "Hot paths" for the picture.
"""
