"""Replaying: recorded runs read back through the verified door, re-execution, verdicts and
table comparison, time travel (``at``, what-if runs), the diff of two runs and lineage.

Imports ``replay.capture`` and below.
"""
