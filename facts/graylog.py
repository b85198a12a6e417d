"""Facts of the output host's log stack (Graylog, OpenSearch, MongoDB)."""

from __future__ import annotations

import json
import shlex

from pyinfra.api import FactBase

_KEYRINGS = r"""
for f in {paths}; do
  echo "keyring=$f"
  if [ -s "$f" ]; then
    t=$(mktemp -d)
    GNUPGHOME="$t" gpg --batch --with-colons --show-keys "$f" 2>/dev/null \
      | grep -E '^(pub|sub|fpr):'
    GNUPGHOME="$t" gpgconf --kill all 2>/dev/null
    rm -rf "$t"
  fi
done
echo "max_map_count=$(cat /proc/sys/vm/max_map_count 2>/dev/null)"
"""


class LogStackState(FactBase):
    """
    The apt keyrings of the log stack's repositories and the live vm.max_map_count, in one
    round trip. A keyring is ``None`` when absent; ``signing_until`` lists, for each key
    that may sign (not revoked), when it expires (``None``: never).

    .. code:: python

        {
            "keyrings": {
                "/etc/apt/keyrings/kubi-graylog.gpg": {
                    "fingerprints": ["28AB6EB5..."],       # primary keys
                    "signing_until": [None],               # or epoch seconds
                },
                "/etc/apt/keyrings/kubi-mongodb.gpg": None,
            },
            "max_map_count": 65530,
        }
    """

    def command(self, keyrings: tuple[str, ...]) -> str:
        return _KEYRINGS.format(paths=" ".join(shlex.quote(p) for p in keyrings))

    def process(self, output: list[str]) -> dict:
        state: dict = {"keyrings": {}, "max_map_count": None}
        current: dict | None = None
        path = last_record = ""
        for line in output:
            if line.startswith("keyring="):
                current = None
                path = line[len("keyring=") :]
                state["keyrings"][path] = None
                continue
            if line.startswith("max_map_count="):
                value = line.split("=", 1)[1].strip()
                state["max_map_count"] = int(value) if value.isdigit() else None
                continue
            fields = line.split(":")
            record = fields[0]
            if record in ("pub", "sub"):
                if current is None:
                    current = {"fingerprints": [], "signing_until": []}
                    state["keyrings"][path] = current
                validity, expires, capabilities = fields[1], fields[6], fields[11]
                # Lower-case letters are this (sub)key's own capabilities.
                if "s" in capabilities and validity != "r":
                    current["signing_until"].append(int(expires) if expires else None)
                last_record = record
            elif record == "fpr" and current is not None and last_record == "pub":
                current["fingerprints"].append(fields[9])
                last_record = "fpr"
        return state


class GraylogInputs(FactBase):
    """
    Graylog's inputs, from its REST API on the host (credentials from a 0600 netrc file,
    never on the command line), or ``None`` when Graylog does not answer (not installed
    yet, starting, no credentials yet):

    .. code:: python

        [{"id": "65f...", "title": "kubi GELF TCP", "type": "org.graylog2...GELFTCPInput",
          "global": True, "attributes": {"bind_address": "0.0.0.0", "port": 12201, ...}}]
    """

    def command(self, api: str, netrc: str) -> str:
        n = shlex.quote(netrc)
        url = shlex.quote(api.rstrip("/") + "/system/inputs")
        return (
            f"if [ -r {n} ]; then curl -sS --noproxy '*' --max-time 10 --netrc-file {n} "
            "-H 'Accept: application/json' -H 'X-Requested-By: kubi' "
            f"-w '\\n%{{http_code}}\\n' {url} 2>/dev/null; fi; true"
        )

    def process(self, output: list[str]) -> list[dict] | None:
        lines = [line for line in output if line.strip()]
        if not lines or lines[-1].strip() != "200":
            return None
        try:
            return json.loads("\n".join(lines[:-1])).get("inputs", [])
        except (ValueError, AttributeError):
            return None
