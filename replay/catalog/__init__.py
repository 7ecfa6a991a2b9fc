"""The DuckDB index over the store: ingest, the read-only queries behind ``runs``, ``show``,
``find`` and ``sql``, the check of the index against the ledger (``truth``), and the two
whole-store operations that span files and index: ``check`` (``verify --store``) and
``repair`` (``doctor``).

Imports ``replay.store`` and below.
"""
