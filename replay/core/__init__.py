"""The vocabulary every layer shares: digests and canonical JSON, run ids, ``Pipeline``/
``Step`` and ``Model`` declarations, the run context (logical clock, seeds, tape), Merkle
hashing, signing keys, the pinned-key trust store and who may open a store
(``ownership``), run kinds, time parsing, safe file opening, value formatting, and the one
door through which bytes become objects (``unpickle``).

Imports only ``replay.errors`` and third-party libraries.
"""
