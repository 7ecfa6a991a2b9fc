"""Replaying: recorded runs read back through the verified door, re-execution, verdicts and
table comparison, time travel (``at``, what-if runs), the diff of two runs and lineage.

Imports ``replay.capture`` and below, but not the catalog: a run is found by its id in the
ledger (``Store.entry``); only time travel's ``at``, a search by time, asks the index.
"""
