# The pipeline-replay CLI and the reference pipelines, for in-container capture and replay.
#
#   docker build -t pipeline-replay .                          # public Python base
#   docker build --build-arg BASE=local/py:bookworm -t ...     # any base with python3 >= 3.11
#
# An image cannot contain its own digest: the deployment passes it at run time
# (docker run -e REPLAY_IMAGE_DIGEST=registry/name@sha256:...), and capture records it.
ARG BASE=python:3.11-slim
FROM ${BASE}

# git: DVC reads data versions from git history.
RUN if command -v apt-get >/dev/null; then \
        apt-get update && apt-get install -y --no-install-recommends git ca-certificates \
        && rm -rf /var/lib/apt/lists/*; \
    fi

WORKDIR /opt/pipeline-replay
RUN python3 -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

COPY pyproject.toml README.md ./
COPY replay ./replay
COPY pipelines ./pipelines
RUN pip install . && rm -rf /root/.cache

# Never run recorded code as root; the store is mounted at /store.
RUN useradd --uid 10001 --create-home replay && mkdir /store && chown replay /store
USER 10001
ENV REPLAY_STORE=/store
WORKDIR /home/replay
ENTRYPOINT ["replay"]
CMD ["--help"]
