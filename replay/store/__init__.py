"""The store's files: content-addressed objects, segment blocks, the hash-chained ledger,
group commit, signed checkpoints and the verified-read check of every entry
(``history``), each reading and writing only through the filesystem seam (``fs``).

Imports ``replay.core`` and ``replay.errors`` only: the files are the truth and know
nothing of the index above them.
"""
