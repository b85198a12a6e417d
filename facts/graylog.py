"""Facts of the output host's log stack (Graylog, OpenSearch, MongoDB)."""

from __future__ import annotations

import json
import shlex

from pyinfra.api import FactBase

from kubi import aptsource


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
        return aptsource.keyrings_script(keyrings) + (
            'echo "max_map_count=$(cat /proc/sys/vm/max_map_count 2>/dev/null)"\n'
        )

    def process(self, output: list[str]) -> dict:
        state: dict = {"keyrings": aptsource.parse_keyrings(output), "max_map_count": None}
        for line in output:
            if line.startswith("max_map_count="):
                value = line.split("=", 1)[1].strip()
                state["max_map_count"] = int(value) if value.isdigit() else None
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
