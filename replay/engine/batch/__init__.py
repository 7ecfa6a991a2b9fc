"""Bulk replay on Dask distributed: a job's record and results on the store (``jobs``), the
task each worker runs on a chunk of runs (``task``), what a chunk's results add up to
(``summary``), the client that submits chunks and counts them home (``cluster``), and what
runs inside the recorded image when a chunk replays there (``contained``; the task that
starts its container is ``replay.docker.batch``, above the engine).

Imports ``replay.engine.replay`` and below; never the catalog (the caller selects the runs).
Dask is imported only by ``cluster``, and only when a batch runs, so that nothing else of the
package pays for it; workers import ``task`` by reference, so no code travels through the
scheduler.
"""
