"""Docker: ``client`` (an engine connection, and which image this process runs in; low, used
by capture), ``sandbox`` (replay inside the recorded image with every restriction; beside
the engine) and ``imagetar`` (checking ``docker save`` tarballs).

``client`` imports ``replay.core`` and below; ``sandbox`` imports ``replay.engine`` and
below.
"""
