"""Graylog's REST API from the output host: make kubi's GELF input exist as wanted.

The graylog deploy uploads this file verbatim to the output host and runs it there as

    python3 <this file> ensure-input SPEC.json NETRC

SPEC holds where the API is and the input wanted (``{"api": ..., "input": ...,
"wait_seconds": ...}``); NETRC holds the admin credentials, so no secret is ever on a
command line. The run waits (bounded) until Graylog answers, lists the inputs, then creates
or updates kubi's input only when it differs; it prints one line saying what it did, or one
line saying what failed (never the password).

The host has Python but neither kubi nor any third-party package: this file imports the
standard library only, and the unit tests run it the same way, so what they check is what
the host runs. The diff (`input_action`) lives here for that reason; the deploy uses the
same function while planning.
"""

from __future__ import annotations

import base64
import json
import netrc
import os
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from typing import Any

ADMIN_USER = "admin"  # Graylog's root user: the login when the netrc names none
# Graylog's first start creates its indices in OpenSearch: give it time, but not forever.
WAIT_SECONDS = 300


# --- the diff ----------------------------------------------------------------------------------


def input_action(inputs: list[dict], wanted: dict) -> tuple[str, str | None] | None:
    """What to do, given Graylog's inputs (GET /api/system/inputs, its "inputs" list).

    ``("create", None)``, ``("update", <id>)`` or ``None`` when the input is as wanted.
    Only the fields kubi sets are compared: Graylog adds defaults for the others.
    """
    mine = [i for i in inputs if i.get("title") == wanted["title"]]
    if not mine:
        return ("create", None)
    current = mine[0]
    attributes = current.get("attributes") or {}
    same = (
        current.get("type") == wanted["type"]
        and bool(current.get("global")) == wanted["global"]
        and all(attributes.get(k) == v for k, v in wanted["configuration"].items())
    )
    return None if same else ("update", current["id"])


def input_request(action: tuple[str, str | None], wanted: dict) -> tuple[str, str, dict]:
    """(method, path under the API base, JSON body) of the request for `action`."""
    body = {
        "title": wanted["title"],
        "type": wanted["type"],
        "global": wanted["global"],
        "configuration": wanted["configuration"],
    }
    kind, input_id = action
    if kind == "create":
        return ("POST", "/system/inputs", body)
    return ("PUT", f"/system/inputs/{input_id}", body)


# --- the client --------------------------------------------------------------------------------


class GraylogError(Exception):
    """A failure to report in one line (never containing the password)."""


@dataclass
class Api:
    """Graylog's REST API at `base` (e.g. http://127.0.0.1:9000/api) as `user`.

    `credentials` names the file the password came from, for the message when Graylog
    refuses it.
    """

    base: str
    user: str
    password: str = field(repr=False)
    credentials: str = "the credentials file"
    timeout: float = 30.0

    def __post_init__(self):
        # The API is on the loopback: never through a proxy from the environment.
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def call(self, method: str, path: str, body: Any = None, accept: str = "application/json"):
        """(status, decoded body) of one request; HTTP errors are answers, not exceptions."""
        token = base64.b64encode(f"{self.user}:{self.password}".encode()).decode()
        headers = {
            "Accept": accept,
            "X-Requested-By": "kubi",  # Graylog refuses changes without it (CSRF guard)
            "Authorization": f"Basic {token}",
        }
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        request = urllib.request.Request(
            self.base.rstrip("/") + path, data=data, headers=headers, method=method
        )
        try:
            with self._opener.open(request, timeout=self.timeout) as answer:
                return answer.status, _decode(answer.read())
        except urllib.error.HTTPError as exc:
            return exc.code, _decode(exc.read())

    def wait_ready(self, seconds: float, interval: float = 2.0) -> None:
        """Wait (bounded) until the load-balancer status says ALIVE."""
        url = self.base.rstrip("/") + "/system/lbstatus"
        deadline = time.monotonic() + seconds
        last = "no answer yet"
        while True:
            try:
                status, body = self.call("GET", "/system/lbstatus", accept="text/plain")
                if status == 200 and "ALIVE" in str(body):
                    return
                last = f"HTTP {status} {str(body).strip()[:60]}"
            except (OSError, urllib.error.URLError) as exc:
                last = str(getattr(exc, "reason", exc))
            if time.monotonic() + interval > deadline:
                raise GraylogError(
                    f"kubi: Graylog did not become ready within {seconds:g} s at {url} "
                    f"(last: {last}); see `journalctl -u graylog-server` and "
                    "/var/log/graylog-server/server.log on this host"
                )
            time.sleep(interval)

    def checked(self, method: str, path: str, body: Any = None):
        status, answer = self.call(method, path, body)
        if status == 401:
            raise GraylogError(
                f"kubi: Graylog refused the credentials of user {self.user!r} (HTTP 401 on "
                f"{method} {path}): the password in {self.credentials} does not match "
                "root_password_sha2 in /etc/graylog/server/server.conf; run the graylog "
                "deploy again (it writes both from the secrets store)"
            )
        if not 200 <= status < 300:
            message = answer.get("message") if isinstance(answer, dict) else answer
            raise GraylogError(
                f"kubi: Graylog answered HTTP {status} to {method} {path}: {message}"
            )
        return answer


def _decode(raw: bytes) -> Any:
    text = raw.decode(errors="replace")
    try:
        return json.loads(text)
    except ValueError:
        return text


def ensure_input(api: Api, wanted: dict, wait_seconds: float = WAIT_SECONDS) -> str:
    """Create or update kubi's input when needed; return what was done, in one line."""
    api.wait_ready(wait_seconds)
    listing = api.checked("GET", "/system/inputs")
    action = input_action(listing.get("inputs", []), wanted)
    port = wanted["configuration"]["port"]
    if action is None:
        return f"kubi: input {wanted['title']!r} (GELF TCP {port}) is already as wanted"
    method, path, body = input_request(action, wanted)
    answer = api.checked(method, path, body)
    done = "created" if action[0] == "create" else "updated"
    input_id = answer.get("id", action[1]) if isinstance(answer, dict) else action[1]
    return f"kubi: input {wanted['title']!r} (GELF TCP {port}) {done}, id {input_id}"


def read_credentials(path: str, machine: str) -> tuple[str, str]:
    found = netrc.netrc(path).authenticators(machine)
    if not found:
        raise GraylogError(f"kubi: {path} has no entry for machine {machine}")
    login, _, password = found
    return login or ADMIN_USER, password or ""


def main(argv: list[str], prog: str = "graylog_api.py") -> int:
    """``<prog> ensure-input SPEC NETRC``: exit 0 when the input is as wanted."""
    if len(argv) != 3 or argv[0] != "ensure-input":
        print(f"usage: {prog} ensure-input SPEC.json NETRC", file=sys.stderr)
        return 2
    spec_path, netrc_path = argv[1], argv[2]
    with open(spec_path) as handle:
        spec = json.load(handle)
    try:
        machine = urllib.parse.urlsplit(spec["api"]).hostname or "127.0.0.1"
        user, password = read_credentials(netrc_path, machine)
        api = Api(spec["api"], user, password, credentials=netrc_path)
        print(ensure_input(api, spec["input"], spec.get("wait_seconds", WAIT_SECONDS)))
    except (GraylogError, OSError, netrc.NetrcParseError) as exc:
        print(str(exc) if isinstance(exc, GraylogError) else f"kubi: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:], os.path.basename(sys.argv[0])))
