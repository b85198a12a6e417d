"""Facts about the people's accounts kubi manages."""

from __future__ import annotations

import shlex

from pyinfra.api import FactBase

GROUPS = ("kubi-ops", "kubi-dev")
# sshd reads the people's keys from here (root's folder and files), never from their homes.
KEYS_DIR = "/etc/ssh/authorized_keys"

_SCRIPT = r"""
for g in {groups}; do
  line=$(getent group "$g") || {{ echo "nogroup $g"; continue; }}
  echo "group $g ${{line##*:}}"
done
for u in $(getent group {groups} | cut -d: -f4 | tr ',' ' ' | tr ' ' '\n' | sort -u); do
  getent passwd "$u" | awk -F: '{{print "user", $1, $6, $7}}'
done
d={keys_dir}
if [ -d "$d" ] && [ ! -L "$d" ]; then
  echo "keydir $(stat -c '%U:%G %a' "$d")"
  for f in "$d"/*; do
    if [ -e "$f" ] || [ -L "$f" ]; then echo "keyfile ${{f##*/}}"; fi
  done
elif [ -e "$d" ] || [ -L "$d" ]; then
  echo "keydir other"
fi
"""


class KubiAccounts(FactBase):
    """
    The kubi people groups, their members' accounts and the keys folder, in one round trip:

    .. code:: python

        {
            "groups": {"kubi-ops": ["alice"], "kubi-dev": []},   # absent group: missing key
            "users": {"alice": {"home": "/home/alice", "shell": "/bin/bash"}},
            # KEYS_DIR: "root:root 755" (owner and mode), "other" (not a folder: a link, a
            # file) or None (absent); and the names of the files in it.
            "keys": {"folder": "root:root 755", "files": ["alice"]},
        }
    """

    def command(self) -> str:
        groups = " ".join(shlex.quote(g) for g in GROUPS)
        return _SCRIPT.format(groups=groups, keys_dir=KEYS_DIR)

    def process(self, output: list[str]) -> dict:
        result = KubiAccounts.default()
        for line in output:
            kind, _, rest = line.partition(" ")
            if kind == "group":
                name, _, members = rest.partition(" ")
                result["groups"][name] = [m for m in members.split(",") if m]
            elif kind == "user":
                name, home, shell = rest.split(" ", 2)
                result["users"][name] = {"home": home, "shell": shell}
            elif kind == "keydir":
                result["keys"]["folder"] = rest
            elif kind == "keyfile":
                result["keys"]["files"].append(rest)
        return result

    @staticmethod
    def default() -> dict:
        return {"groups": {}, "users": {}, "keys": {"folder": None, "files": []}}
