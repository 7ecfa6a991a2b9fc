"""Evidence for a regulator: export of signed bundles, the bundle format and its streaming
verification, opening a verified bundle for replay, witnesses' cosignatures, and the human
report (HTML and PDF) with its templates; and the commands that join those with the layers
below: ``run`` (replay from a store or a verified bundle, here or in the sandbox) and
``checks`` (``verify`` a bundle or a whole store, sign a ``checkpoint``).

Imports ``replay.engine``, ``replay.docker`` and below. ``bundle``, ``shapes`` and
``verify`` import nothing that unpickles, runs Docker or opens DuckDB.
"""
