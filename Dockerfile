# The pipeline-replay CLI and the reference pipelines, for in-container capture and replay.
#
#   docker build -t pipeline-replay .                          # public Python base
#   docker build --build-arg BASE=local/py:bookworm -t ...     # any Debian-like base with python3 >= 3.11
#   docker build --build-arg PIP_INDEX_URL=https://mirror/simple ...   # behind a PyPI mirror
#   docker build --build-arg PIP_NO_INDEX=1 --build-arg PIP_FIND_LINKS=http://host/wheels/ ...
#
# An image cannot contain its own digest. Capture learns it at run time in one of two ways:
#   docker run -e REPLAY_IMAGE_DIGEST=registry/name@sha256:... [-e REPLAY_IMAGE_ID=sha256:...]
#   docker run -v /var/run/docker.sock:/var/run/docker.sock ...   (capture asks the engine)
# and records the repo digest and image ID, never a tag.
ARG BASE=python:3.11-slim
FROM ${BASE}

# Install only what the base lacks, and fail here rather than at run time if it cannot:
#   git             the workspace and DVC run the git binary (no base image ships it);
#   passwd          useradd below (in the official images, not in a minimal Debian one);
#   python3-venv    Debian's python3 cannot `python3 -m venv` without it (the official has it);
#   ca-certificates pip over https;
#   tzdata          pyarrow needs a time-zone database to read the catalog's UTC timestamps
#                   (a minimal Debian base has none).
RUN set -e; need=; \
    command -v git >/dev/null || need="$need git"; \
    command -v useradd >/dev/null || need="$need passwd"; \
    python3 -c 'import ensurepip' 2>/dev/null || need="$need python3-venv"; \
    [ -e /etc/ssl/certs/ca-certificates.crt ] || need="$need ca-certificates"; \
    [ -e /usr/share/zoneinfo/UTC ] || need="$need tzdata"; \
    if [ -n "$need" ]; then \
        command -v apt-get >/dev/null || { echo "base image lacks:$need (and apt-get)" >&2; exit 1; }; \
        apt-get update; \
        DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $need; \
        rm -rf /var/lib/apt/lists/*; \
    fi

# Never run recorded code as root; the store is mounted at /store.
RUN useradd --uid 10001 --create-home replay && mkdir /store && chown replay /store

WORKDIR /opt/pipeline-replay
RUN python3 -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# Build-time only (not kept in the image's environment, but visible in `docker history`:
# no credentials in the URL).
ARG PIP_INDEX_URL
ARG PIP_TRUSTED_HOST
ARG PIP_FIND_LINKS
ARG PIP_NO_INDEX
COPY pyproject.toml README.md ./
COPY replay ./replay
COPY pipelines ./pipelines
RUN pip install . && rm -rf /root/.cache build *.egg-info

USER 10001
ENV REPLAY_STORE=/store
WORKDIR /home/replay
ENTRYPOINT ["replay"]
CMD ["--help"]
