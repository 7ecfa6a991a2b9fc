"""A ``docker save`` tarball proves its image ID: config digest and every layer's diff_id.
(Real tarballs from a real engine are exercised in test_docker.py; these are built by hand
so that each way of lying can be tried.)"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile

import pytest

from replay.docker.imagetar import ImageTarError, image_id

LAYER = b"layer bytes " * 100


def saved(
    layer: bytes = LAYER, *, diff_id: bytes = LAYER, link: bool = False, manifest: object = None
) -> tuple[bytes, str]:
    config = json.dumps(
        {
            "rootfs": {
                "type": "layers",
                "diff_ids": ["sha256:" + hashlib.sha256(diff_id).hexdigest()],
            }
        }
    ).encode()
    cid = hashlib.sha256(config).hexdigest()
    files: dict[str, bytes] = {f"{cid}.json": config, "aaa/layer.tar": layer}
    layers = ["bbb/layer.tar" if link else "aaa/layer.tar"]
    files["manifest.json"] = json.dumps(
        manifest
        if manifest is not None
        else [{"Config": f"{cid}.json", "RepoTags": None, "Layers": layers}]
    ).encode()
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        if link:  # newer engines link a repeated layer to its first copy
            info = tarfile.TarInfo("bbb/layer.tar")
            info.type, info.linkname = tarfile.SYMTYPE, "../aaa/layer.tar"
            tar.addfile(info)
    return out.getvalue(), "sha256:" + cid


def test_the_image_id_is_the_digest_of_its_config() -> None:
    data, want = saved()
    assert image_id(data) == want


def test_a_layer_reached_through_a_link_inside_the_tar_is_hashed() -> None:
    data, want = saved(link=True)
    assert image_id(data) == want


def test_a_changed_layer_is_refused() -> None:
    data, _ = saved(layer=LAYER[:-1] + b"!")
    with pytest.raises(ImageTarError, match=r"aaa/layer\.tar hashes to"):
        image_id(data)


def test_a_config_listing_another_layer_is_refused() -> None:
    data, _ = saved(diff_id=b"another layer")
    with pytest.raises(ImageTarError, match="the config says"):
        image_id(data)


@pytest.mark.parametrize(
    "manifest",
    [[], [{"Config": "x.json", "Layers": []}] * 2, [{"Config": "missing.json", "Layers": []}]],
)
def test_a_manifest_not_naming_exactly_one_present_image_is_refused(manifest) -> None:
    data, _ = saved(manifest=manifest)
    with pytest.raises(ImageTarError):
        image_id(data)


@pytest.mark.parametrize("data", [b"", b"not a tar at all" * 64])
def test_bytes_that_are_not_a_tarball_are_refused(data) -> None:
    with pytest.raises(ImageTarError, match="not a docker save tarball"):
        image_id(data)
