"""Facts about the people's accounts kubi manages."""

from __future__ import annotations

import shlex

from pyinfra.api import FactBase

GROUPS = ("kubi-ops", "kubi-dev")

_SCRIPT = r"""
for g in {groups}; do
  line=$(getent group "$g") || {{ echo "nogroup $g"; continue; }}
  echo "group $g ${{line##*:}}"
done
for u in $(getent group {groups} | cut -d: -f4 | tr ',' ' ' | tr ' ' '\n' | sort -u); do
  getent passwd "$u" | awk -F: '{{print "user", $1, $6, $7}}'
done
"""


class KubiAccounts(FactBase):
    """
    The kubi people groups and their members' accounts, in one round trip:

    .. code:: python

        {
            "groups": {"kubi-ops": ["alice"], "kubi-dev": []},   # absent group: missing key
            "users": {"alice": {"home": "/home/alice", "shell": "/bin/bash"}},
        }
    """

    def command(self) -> str:
        return _SCRIPT.format(groups=" ".join(shlex.quote(g) for g in GROUPS))

    def process(self, output: list[str]) -> dict:
        result: dict = {"groups": {}, "users": {}}
        for line in output:
            kind, _, rest = line.partition(" ")
            if kind == "group":
                name, _, members = rest.partition(" ")
                result["groups"][name] = [m for m in members.split(",") if m]
            elif kind == "user":
                name, home, shell = rest.split(" ", 2)
                result["users"][name] = {"home": home, "shell": shell}
        return result

    @staticmethod
    def default() -> dict:
        return {"groups": {}, "users": {}}
