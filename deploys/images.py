"""images: the platform's container images in its own registry, for nodes without the
internet (kubi/images.py).

On the repository host, skopeo copies every image the platform runs into the platform
registry's loopback listener: from an OCI archive on the deployer (`images.archives`, one
`<name>_<tag>.tar` per image, as an air-gapped site brings them in, or the lab builds them),
else from its upstream registry. The registry component points every node's containerd at
these copies. A copy is made again only when the registry lacks it, or holds another digest
than the archive's.

    pyinfra inventories/lab.py deploys/images.py     # also: kubi images mirror
"""

from __future__ import annotations

from pyinfra import host

import kubi.images
from facts.images import PlatformRegistryImages
from kubi import ops
from kubi.deploy import component, entry_script, platform


@component("images")
def images() -> None:
    cfg = platform()
    wanted = kubi.images.needed(cfg)
    folder = cfg.images.archives
    # Every archive exists (the config check): its digest is read before anything changes.
    digests = {}
    if folder is not None:
        for image in wanted:
            digests[image.ref] = kubi.images.archive_digest(folder / image.archive_name)
    ops.packages(name="skopeo", names=["skopeo"])
    held = host.get_fact(PlatformRegistryImages, refs=tuple(i.ref for i in wanted))
    for image in wanted:
        # a chart's pin, or the archive's (the config check makes them agree)
        expected = image.digest or digests.get(image.ref)
        there = held.get(image.ref)
        ops.registry_image(
            name=f"image {image.ref}",
            ref=image.ref,
            repository=f"{image.repository}:{image.tag}",
            present=there is not None and (expected is None or there == expected),
            archive=str(folder / image.archive_name) if folder is not None else None,
        )


if entry_script(__name__):
    images()
