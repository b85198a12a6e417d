"""A tiny OCI image made in Python, for registry tests: no image builder needed.

One layer (a tar.gz holding /hello.txt), its config and its manifest, as bytes with their
digests; `write_layout` lays it out as an OCI image layout folder that `skopeo copy
oci:<folder>:<tag> docker://...` pushes as it is.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
from dataclasses import dataclass
from pathlib import Path

MANIFEST_TYPE = "application/vnd.oci.image.manifest.v1+json"
CONFIG_TYPE = "application/vnd.oci.image.config.v1+json"
LAYER_TYPE = "application/vnd.oci.image.layer.v1.tar+gzip"


def digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class Image:
    layer: bytes
    config: bytes
    manifest: bytes

    @property
    def manifest_digest(self) -> str:
        return digest(self.manifest)

    def blobs(self) -> dict[str, bytes]:
        return {digest(b): b for b in (self.layer, self.config, self.manifest)}


def image(message: str = "hello from kubi\n") -> Image:
    """A reproducible one-layer image whose /hello.txt holds `message`."""
    tar_bytes = io.BytesIO()
    with tarfile.open(fileobj=tar_bytes, mode="w", format=tarfile.PAX_FORMAT) as tar:
        data = message.encode()
        info = tarfile.TarInfo("hello.txt")
        info.size, info.mode, info.mtime = len(data), 0o644, 0
        tar.addfile(info, io.BytesIO(data))
    diff_id = digest(tar_bytes.getvalue())
    layer = gzip.compress(tar_bytes.getvalue(), mtime=0)
    config = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "config": {"Cmd": ["/bin/cat", "/hello.txt"]},
            "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        },
        sort_keys=True,
    ).encode()
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": MANIFEST_TYPE,
            "config": {"mediaType": CONFIG_TYPE, "digest": digest(config), "size": len(config)},
            "layers": [{"mediaType": LAYER_TYPE, "digest": digest(layer), "size": len(layer)}],
        },
        sort_keys=True,
    ).encode()
    return Image(layer, config, manifest)


def write_layout(img: Image, folder: Path, tag: str) -> Path:
    """An OCI image layout (oci-layout, index.json, blobs/sha256/...) holding `img` as `tag`."""
    blobs = folder / "blobs" / "sha256"
    blobs.mkdir(parents=True, exist_ok=True)
    for name, data in img.blobs().items():
        (blobs / name.removeprefix("sha256:")).write_bytes(data)
    (folder / "oci-layout").write_text(json.dumps({"imageLayoutVersion": "1.0.0"}))
    index = {
        "schemaVersion": 2,
        "manifests": [
            {
                "mediaType": MANIFEST_TYPE,
                "digest": img.manifest_digest,
                "size": len(img.manifest),
                "annotations": {"org.opencontainers.image.ref.name": tag},
            }
        ],
    }
    (folder / "index.json").write_text(json.dumps(index))
    return folder
