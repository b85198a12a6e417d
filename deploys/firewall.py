"""firewall: nftables on every platform host, each port open only to the hosts that need it.

One table, `inet kubi`, per host (kubi/firewall.py says what it lets in), kept in
/etc/kubi/firewall.nft and loaded at boot by the kubi-firewall unit. A change is checked
by `nft -c` before it is loaded, the table is replaced atomically, and connections already
open (this deploy's own) stay up. Before anything changes, the deploy refuses rules that
would refuse its own next SSH connection. A table removed or edited by hand is reloaded.

On the input host, people's accounts (other than operators and the deploy's account)
reach only the cockpit and the Kubernetes API stream on 127.0.0.1. Operators' accounts
are exempt by name (nft checks each exists when it loads the rules: after adding an operator,
run deploys/bastion.py before this deploy alone; deploys/all.py runs both in that order).

    pyinfra inventories/lab.py deploys/firewall.py
"""

import shlex

from pyinfra import host
from pyinfra.operations import server

import kubi.firewall
from facts.firewall import FirewallState
from kubi import ops
from kubi.deploy import addresses, component, entry_script, me, platform
from kubi.templates import render


@component("firewall")
def firewall() -> None:
    cfg = platform()
    node = me()
    ops.packages(name="nftables", names=["nftables"])
    state = host.get_fact(FirewallState)
    rules, text = kubi.firewall.rules_file(cfg, node, addresses(), state["uid_range"])

    if rules.ssh_refuses(state["client"]):
        field = "ssh_from" if "input" in node.roles else "admin_networks"
        message = (
            f"kubi: refusing the firewall of {node.name}: this deploy connects from "
            f"{state['client']}, which firewall.{field} does not include, so its next run "
            f"could not connect; add that network to firewall.{field}"
            + ("" if "input" in node.roles else " or deploy through the input host")
        )
        server.shell(
            name="firewall keeps the deploy's SSH",
            commands=[f"echo {shlex.quote(message)} >&2; exit 1"],
        )
        return

    path = kubi.firewall.RULES_FILE
    written = ops.file(
        name="firewall rules",
        path=path,
        content=text,
        make_dirs=True,
        check=f"nft -c -f {path}",
        reload=f"nft -f {path}",
    )
    if not written.will_change and state["loaded"] != kubi.firewall.loaded_digest(text):
        server.shell(
            name="firewall rules loaded (the table was missing or changed by hand)",
            commands=[f"nft -f {path}"],
        )
    unit = kubi.firewall.UNIT
    ops.file(
        name="firewall at boot",
        path=f"/etc/systemd/system/{unit}.service",
        content=render("firewall", "kubi-firewall.service", rules_file=path),
        reload="systemctl daemon-reload",
    )
    # Enabled only: the deploy has loaded the rules itself.
    ops.service(name="firewall unit enabled", unit=unit, running=None, enabled=True)


if entry_script(__name__):
    firewall()
