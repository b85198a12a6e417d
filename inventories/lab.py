"""Inventory of the running local lab, derived from the lab's state (`kubi lab up`).

    kubi lab up
    pyinfra inventories/lab.py deploys/all.py

Every lab address is checked to route through the lab bridge before pyinfra may connect
to it (the lab's network safety rule).
"""

import sys

from kubi import lab
from kubi.inventory import declare

_state = lab.load_state()
if _state is None:
    print("inventories/lab.py: the lab is not up; run `kubi lab up` first", file=sys.stderr)
    raise SystemExit(2)
try:
    for _host in _state.hosts:
        lab.check_route(_host.address)
except lab.LabError as _exc:
    print(f"inventories/lab.py: {_exc}", file=sys.stderr)
    raise SystemExit(2) from None

_groups: dict = {}
for _host in _state.hosts:
    _groups.setdefault(_host.role, []).append((_host.name, {"address": _host.address}))

platform = declare(
    __file__,
    name="lab",
    groups=_groups,
    domain="lab.kubi.internal",
    apt_proxy=_state.apt_proxy,
    ssh={
        "user": "root",
        "key": str(_state.ssh_key),
        # Each lab host has its own host key; `kubi lab up` records them all.
        "strict_host_key_checking": "yes",
        "known_hosts_file": str(lab.known_hosts_file()),
    },
    network={"host_cidrs": [str(lab.SUBNET)]},
)
globals().update(platform.pyinfra_groups())
