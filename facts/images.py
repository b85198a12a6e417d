"""Facts of the images component: what the platform registry holds."""

from __future__ import annotations

import shlex

from pyinfra.api import FactBase

from kubi.images import DIGEST, MANIFEST_TYPES, Image
from kubi.registry import UPSTREAM

_ACCEPT = "Accept: " + ", ".join(MANIFEST_TYPES)


class PlatformRegistryImages(FactBase):
    """
    The digest the platform registry holds for each image, asked of its loopback listener
    in one round trip (None: absent, or the registry does not answer yet: a first converge
    plans before the registry runs):

    .. code:: python

        {"registry.k8s.io/pause:3.10": "sha256:...", "registry.k8s.io/etcd:3.5.21-0": None}
    """

    def command(self, refs: tuple[str, ...]) -> str:
        lines = []
        for ref in refs:
            image = Image(ref)
            url = f"http://{UPSTREAM}/v2/{image.repository}/manifests/{image.tag}"
            lines.append(
                f"printf '%s ' {shlex.quote(ref)}; curl -sI -o /dev/null --max-time 10 "
                f"-w '%{{http_code}} %header{{docker-content-digest}}\\n' "
                f"-H {shlex.quote(_ACCEPT)} {shlex.quote(url)} || echo"
            )
        return "\n".join(lines)

    def process(self, output: list[str]) -> dict[str, str | None]:
        held: dict[str, str | None] = {}
        for line in output:
            words = line.split()
            if not words:
                continue
            digest = words[2] if len(words) == 3 and words[1] == "200" else None
            held[words[0]] = digest if digest and DIGEST.fullmatch(digest) else None
        return held
