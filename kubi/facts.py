"""The facts kubi's own operations (`kubi.ops`) and helpers (`kubi.deploy`) read.

One shell command each, so a converged host costs one round trip per operation. Facts that
only one component reads live beside the deploys, in `facts/<component>.py`.
"""

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


class ServiceState(FactBase):
    """
    Whether a systemd unit is active and enabled, in one round trip:

    .. code:: python

        {"active": True, "enabled": True}   # or {"active": False, "enabled": None} if unknown
    """

    def command(self, unit: str) -> str:
        u = shlex.quote(unit)
        return f"echo active=$(systemctl is-active {u}); echo enabled=$(systemctl is-enabled {u})"

    def process(self, output: list[str]) -> dict:
        raw = dict(line.split("=", 1) for line in output if "=" in line)
        enabled = raw.get("enabled", "")
        return {
            "active": raw.get("active") == "active",
            # is-enabled prints nothing (or "not-found") for a unit that is not installed yet.
            "enabled": True
            if enabled in ("enabled", "enabled-runtime", "alias")
            else (False if enabled in ("disabled", "masked") else None),
        }


class PrimaryIPv4(FactBase):
    """The host's first global IPv4 address (used when the config gives no ``ip``)."""

    def command(self) -> str:
        return "ip -4 -o addr show scope global | awk '{split($4, a, \"/\"); print a[1]; exit}'"

    def process(self, output: list[str]) -> str | None:
        return output[0].strip() if output else None
