"""Benchmarks: how fast, how big, how much memory, each beside the machine's own limit.

``uv run python -m benchmarks [--quick]`` runs the suite (see ``benchmarks.__main__``); each
workload also runs alone as ``uv run python -m benchmarks.<name> [--quick]``:

* ``ingest_http``: durable HTTP batch ingest, in-process and over loopback uvicorn;
* ``ingest_ws``: durable ingest over the producer WebSocket;
* ``subscriber_latency``: live delivery latency, and what 100 subscribers cost ingest;
* ``sustained``: ingest over millions of events (does it slow down?), bytes on disk;
* ``queries``: first pages, a deep page and count-by over 1M and 10M stored events;
* ``footprint``: a real server's memory after ingest and while streaming;
* ``startup``: ephemeral start-up, from import to the first answered request.

Results (JSON) and the cached large events files stay in ``benchmarks/results/``.
"""
