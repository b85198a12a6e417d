"""Facts the firewall deploy reads, in one round trip."""

from __future__ import annotations

from pyinfra.api import FactBase

# SSH_CONNECTION holds the client's address; with sudo it is in the environment of an
# ancestor (sudo clears it), so the process chain is walked up to the session.
_SCRIPT = r"""
p=$$
while [ "${p:-0}" -gt 1 ]; do
  c=$(tr '\0' '\n' < /proc/$p/environ 2>/dev/null | sed -n 's/^SSH_CONNECTION=//p')
  if [ -n "$c" ]; then echo "client ${c%% *}"; break; fi
  p=$(sed 's/.*) //' /proc/$p/stat 2>/dev/null | cut -d' ' -f2)
done
if command -v nft >/dev/null; then
  nft list table inet kubi 2>/dev/null \
    | sed -n 's/^[[:space:]]*comment "kubi-firewall \([0-9a-f]*\)"$/loaded \1/p'
fi
awk '$1 == "UID_MIN" || $1 == "UID_MAX" {print tolower($1), $2}' /etc/login.defs 2>/dev/null
true
"""


class FirewallState(FactBase):
    """
    What the firewall deploy needs from a host:

    .. code:: python

        {
            "client": "10.77.0.1",       # the deploy's address as the host sees it, or None
            "loaded": "3f1c...",         # digest of the loaded table inet kubi, or None
            "uid_range": (1000, 60000),  # people's uids (login.defs; Debian's defaults)
        }
    """

    def command(self) -> str:
        return _SCRIPT

    def process(self, output: list[str]) -> dict:
        result: dict = {"client": None, "loaded": None}
        bounds = {"uid_min": 1000, "uid_max": 60000}
        for line in output:
            kind, _, rest = line.strip().partition(" ")
            if kind in ("client", "loaded"):
                result[kind] = rest
            elif kind in bounds and rest.isdigit():
                bounds[kind] = int(rest)
        result["uid_range"] = (bounds["uid_min"], bounds["uid_max"])
        return result
