"""Facts about files kubi manages."""

from __future__ import annotations

import shlex

from pyinfra.api import FactBase


class ManagedFile(FactBase):
    """
    Mode, owner and content hash of a regular file in one round trip, or ``None`` if absent:

    .. code:: python

        {"mode": "644", "user": "root", "group": "root", "sha256": "9f86d0..."}
    """

    def command(self, path: str) -> str:
        p = shlex.quote(path)
        return f"if [ -f {p} ]; then stat -c '%a %U %G' {p} && sha256sum {p}; fi"

    def process(self, output: list[str]) -> dict[str, str] | None:
        if len(output) < 2:
            return None
        mode, user, group = output[0].split()
        return {"mode": mode, "user": user, "group": group, "sha256": output[1].split()[0]}
