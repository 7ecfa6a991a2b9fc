"""Evidence for a regulator: export of signed bundles, the bundle format and its streaming
verification, opening a verified bundle for replay, witnesses' cosignatures, and the human
report (HTML and PDF) with its templates.

Imports ``replay.engine``, ``replay.docker`` and below. ``bundle``, ``shapes`` and
``verify`` import nothing that unpickles, runs Docker or opens DuckDB.
"""
