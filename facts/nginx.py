"""Facts the nginx deploy reads, in one round trip."""

from __future__ import annotations

import re
import shlex

from pyinfra.api import FactBase

from kubi.facts import ServiceState

# nginx prints "nginx: [emerg] <what> in <file>:<line>" (or, once its error_log is set,
# "<date> <time> [emerg] <pid>#<tid>: <what> in <file>:<line>"); warnings come first.
_FATAL = re.compile(r"\[(?:emerg|alert|crit)\] (?:\d+#\d+: )?(?P<error>.*)")
_WHERE = re.compile(r"(?P<error>.*) in (?P<file>/.*):(?P<line>\d+)")
# A main file nginx cannot open is named inside the message, with no line.
_OPEN = re.compile(r'open\(\) "(?P<file>/[^"]*)" failed')
_OUT = "| "  # prefix of nginx's own lines, apart from the fact's key=value lines


class NginxState(FactBase):
    """
    The nginx unit's state and whether nginx accepts its whole configuration (`nginx -t`):

    .. code:: python

        {"active": True, "enabled": True, "installed": True, "refused": None}
        {"active": True, "enabled": True, "installed": True, "refused": {
            "file": "/etc/nginx/streams.conf.d/x.conf", "line": 1,
            "error": 'unknown directive "garbage"'}}
        {"active": False, "enabled": None, "installed": False, "refused": None}

    ``refused["file"]`` (and ``line``) is ``None`` when nginx names no file. One round trip
    for both, as the deploy reads them together: a converged host pays nothing for the check.
    """

    def command(self, conf: str | None = None) -> str:
        # `conf`: another main file than nginx's own (a test's nginx in a temporary folder).
        test = "nginx -t" + (f" -c {shlex.quote(conf)}" if conf else "")
        return "\n".join(
            (
                ServiceState().command("nginx"),
                "if ! command -v nginx >/dev/null; then echo nginx=absent",
                f"elif out=$({test} 2>&1); then echo nginx=ok",
                f"else echo nginx=refused; printf '%s\\n' \"$out\" | sed 's/^/{_OUT}/'; fi",
            )
        )

    def process(self, output: list[str]) -> dict:
        said = [line[len(_OUT) :] for line in output if line.startswith(_OUT)]
        state = ServiceState().process([line for line in output if not line.startswith(_OUT)])
        verdict = next((line for line in output if line.startswith("nginx=")), "nginx=absent")
        state["installed"] = verdict != "nginx=absent"
        state["refused"] = _refusal(said) if verdict == "nginx=refused" else None
        return state


def _refusal(said: list[str]) -> dict:
    """The file, line and error of nginx's first fatal message."""
    fatal = next((m for m in map(_FATAL.search, said) if m), None)
    error = fatal["error"] if fatal else next((line for line in said if line), "no message")
    where = _WHERE.fullmatch(error)
    if where:
        return {"file": where["file"], "line": int(where["line"]), "error": where["error"]}
    opened = _OPEN.search(error)
    return {"file": opened["file"] if opened else None, "line": None, "error": error}
