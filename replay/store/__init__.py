"""The store's files: content-addressed objects, segment blocks, the hash-chained ledger,
group commit, signed checkpoints, the verified-read check of every entry (``history``),
finding a run's entry by id in the ledger (``lookup``) and the bounded cache of what readers
loaded (``cache``), each reading and writing only through the filesystem seam (``fs``).

Imports ``replay.core`` and ``replay.errors`` only: the files are the truth and know
nothing of the index above them.
"""
