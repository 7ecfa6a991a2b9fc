"""Recording a run: binding a pipeline to its code (by value), models and data (DVC),
executing it with a recording context, capturing the environment, and committing the run.

Imports ``replay.docker.client`` (to ask the engine which image this is), ``replay.catalog``
and below.
"""
