"""Inventory of the running local lab, derived from the lab's state (`kubi lab up`).

    kubi lab up
    pyinfra inventories/lab.py deploys/all.py

Every lab address is checked to route through the lab bridge before pyinfra may connect
to it (the lab's network safety rule). The description itself is built by
`kubi.lab.platform_description` so tests can derive variants of it.
"""

import sys

from kubi import lab
from kubi.inventory import declare

try:
    _state = lab.load_state()
    if _state is None:
        raise lab.LabError("the lab is not up; run `kubi lab up` first")
    _description = lab.platform_description(_state)
except lab.LabError as _exc:
    print(f"inventories/lab.py: {_exc}", file=sys.stderr)
    raise SystemExit(2) from None

platform = declare(__file__, **_description)
globals().update(platform.pyinfra_groups())
