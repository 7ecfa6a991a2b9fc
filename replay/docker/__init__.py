"""Docker: ``client`` (an engine connection, and which image this process runs in; low, used
by capture), ``sandbox`` (replay inside the recorded image with every restriction; beside
the engine), ``batch`` (the task of ``replay batch --in-container``: a chunk of runs in one
sandbox container; above the sandbox) and ``imagetar`` (checking ``docker save`` tarballs).

``client`` imports ``replay.core`` and below; ``sandbox`` imports ``replay.engine`` and
below; ``batch`` the sandbox and below.
"""
