"""Which image a run says it ran in: declared by the deployment, asked of the engine, or
"not in a container" — never a tag. (The engine's answer is tested in test_docker.py.)"""

from __future__ import annotations

import json

import pytest

import replay
import replay.capture.environment as environment
from replay.errors import CaptureError
from tests.conftest import rows

DIGEST = "127.0.0.1:5000/credit@sha256:" + "c" * 64
IMAGE_ID = "sha256:" + "d" * 64


@pytest.fixture(autouse=True)
def fresh_fingerprint(monkeypatch):
    for var in ("REPLAY_IMAGE_DIGEST", "REPLAY_IMAGE_ID"):
        monkeypatch.delenv(var, raising=False)
    environment.fingerprint.cache_clear()
    yield
    environment.fingerprint.cache_clear()


def test_a_declared_repo_digest_and_image_id_are_recorded(store, toy, monkeypatch) -> None:
    monkeypatch.setenv("REPLAY_IMAGE_DIGEST", DIGEST)
    monkeypatch.setenv("REPLAY_IMAGE_ID", IMAGE_ID)
    env = json.loads(store.get_object(replay.record(toy, rows(1), store=store).manifest.env))
    assert env["image"] == {"digest": DIGEST, "id": IMAGE_ID, "source": "REPLAY_IMAGE_DIGEST"}


@pytest.mark.parametrize(
    "tag", ["credit:latest", "127.0.0.1:5000/credit:v3", "sha256:abc", "credit@sha256:" + "c" * 63]
)
def test_a_tag_is_refused_as_an_image_digest(store, toy, monkeypatch, tag) -> None:
    monkeypatch.setenv("REPLAY_IMAGE_DIGEST", tag)
    before = sorted(p.name for p in store.root.rglob("*"))
    with pytest.raises(CaptureError, match="not a repo digest"):
        replay.record(toy, rows(1), store=store)
    assert sorted(p.name for p in store.root.rglob("*")) == before


def test_an_image_id_alone_is_recorded_as_the_digest(monkeypatch) -> None:
    monkeypatch.setenv("REPLAY_IMAGE_ID", IMAGE_ID)
    assert environment.image() == {"digest": IMAGE_ID, "id": IMAGE_ID, "source": "REPLAY_IMAGE_ID"}


def test_outside_a_container_the_run_says_so(monkeypatch) -> None:
    monkeypatch.setattr(environment, "in_container", lambda: False)
    assert environment.image() == {"digest": environment.NOT_IN_CONTAINER}


def test_in_a_container_without_a_declaration_or_socket_the_image_is_undeclared(
    monkeypatch, tmp_path
) -> None:
    monkeypatch.setattr(environment, "in_container", lambda: True)
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no.sock")
    assert environment.image() == {"digest": environment.UNDECLARED}
