"""What deploy code needs from kubi: the platform config and the current host's part of it."""

from __future__ import annotations

import weakref

from pyinfra import host, state
from pyinfra.context import ctx_state

from kubi.config import Host, Platform
from kubi.facts import PrimaryIPv4
from kubi.inventory import current

# Per pyinfra state (one per run): weak keys, so a new state never sees an old one's data.
_addresses: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def platform() -> Platform:
    """The validated config of this run."""
    return current()


def me() -> Host:
    """The config of the host pyinfra is planning for."""
    return platform().host(host.name)


def addresses() -> dict[str, str]:
    """Host-network IPv4 of every platform host, by host name.

    From the config when it gives `ip`; otherwise asked once per run from the host itself
    (one round trip per such host, shared by every host's plan).
    """
    key = ctx_state.get()  # the State object itself, not pyinfra's context proxy
    if key not in _addresses:
        found = {}
        for spec in platform().hosts:
            if spec.ip is not None:
                found[spec.name] = str(spec.ip)
                continue
            other = state.inventory.get_host(spec.name)
            if other is None or other not in state.activated_hosts:
                raise RuntimeError(
                    f"host {spec.name!r}: no `ip` in the config and the host is not part of "
                    "this run; set its ip in the inventory"
                )
            ip = other.get_fact(PrimaryIPv4)
            if not ip:
                raise RuntimeError(f"host {spec.name!r}: no global IPv4 address found; set its ip")
            found[spec.name] = ip
        _addresses[key] = found
    return _addresses[key]
