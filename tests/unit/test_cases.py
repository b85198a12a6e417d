"""kubi's operation and fact cases, kept as data: one JSON file per case, as pyinfra keeps
its own (tests/operations/<module.op>/<case>.json, tests/facts/<module.Fact>/<case>.json).

    tests/cases/operations/<module.operation>/<case>.json     e.g. kubi.ops.file/new.json
        {
          "kwargs":   {"path": "/etc/app.conf", "content": "a=1\\n"},   # the operation's
          "facts":    {"kubi.facts.ManagedFile": {"path=/etc/app.conf": null}},
          "commands": ["...", {"upload": "/etc/app.conf.kubi-new", "content": "a=1\\n"}]
        }
    tests/cases/facts/<module.Fact>/<case>.json               e.g. kubi.facts.ManagedFile/x.json
        {
          "kwargs":  {"path": "/etc/app.conf"},        # the fact's arguments ({} for none)
          "command": "if [ -f ... ]; then ...; fi",    # or a list of lines, joined by "\\n"
          "output":  ["644 root root", "9f86d0...  /etc/app.conf"],   # what the host prints
          "fact":    {"mode": "644", ...}               # the value the deploy sees
        }

Operations: `facts` holds what the host reports, by the fact's pyinfra name
(`kubi.facts.ManagedFile`, `deb.DebPackages`, `files.FileContents`), then by the fact's
arguments, keyed like pyinfra's tests and tests/plans: "path=/etc/hosts" (several sorted,
joined by ", "; "_" for none). A fact the operation asks for that the case does not give
fails the case, naming it; so does a fact the case gives that the operation never asks for.
`commands` are exact: a string is the shell command exactly as pyinfra runs it; an upload
is {"upload": "<remote path>", "content": "<text>"}; a command that is exactly
`sh -c <shlex.quote(script)>` is written {"sh -c": "<script>"}, without the quoting noise;
`[]` means nothing to do. `host_data` (optional) is the inventory's data for the host, e.g.
{"_sudo": true, "ssh_user": "admin"} for a non-root deploy account; an upload staged in a
folder of kubi's own then shows it as "staged_in".

Facts: empty output gives the fact's `default()`, as pyinfra does; otherwise `process()`.

Expected commands and values are written out by hand, never computed from the code under
test: when the code changes on purpose, edit the cases it breaks. Unknown keys in a case
file are refused, so a typo cannot turn a case into one that checks nothing.

    pytest tests/unit/test_cases.py                   # every case
    pytest tests/unit/test_cases.py -k kubi.ops.file  # the cases of one operation or fact
"""

from __future__ import annotations

import importlib
import json
import shlex
from pathlib import Path
from typing import Any

import pytest
from pyinfra.api import FileUploadCommand, StringCommand
from pyinfra.context import ctx_host

CASES = Path(__file__).resolve().parents[1] / "cases"
OPERATION_KEYS = {"kwargs", "facts", "host_data", "commands"}
FACT_KEYS = {"kwargs", "command", "output", "fact"}


class MissingFact(KeyError):
    def __str__(self) -> str:
        return str(self.args[0])


def _files(kind: str) -> list[Path]:
    return sorted((CASES / kind).glob("*/*.json"))


def _id(path: Path) -> str:
    return f"{path.parent.name}/{path.stem}"


def _load(path: Path, keys: set[str]) -> dict[str, Any]:
    case = json.loads(path.read_text())
    unknown, missing = set(case) - keys, keys - set(case) - {"kwargs", "facts", "host_data"}
    assert not unknown and not missing, (
        f"{path.parent.name}/{path.name}: unknown keys {sorted(unknown)}, missing {sorted(missing)}"
    )
    return case


def _resolve(dotted: str) -> Any:
    module, _, name = dotted.rpartition(".")
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as exc:
        raise AssertionError(f"cases folder {dotted!r} names nothing importable: {exc}") from exc


def fact_key(args: tuple, kwargs: dict[str, Any]) -> str:
    """'path=/etc/hosts'; several sorted and joined by ', '; '_' when the fact has none."""
    parts = [_plain(a) for a in args]
    parts += [f"{k}={_plain(v)}" for k, v in sorted(kwargs.items())]
    return ", ".join(parts) or "_"


def _plain(value: Any) -> str:
    return ",".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)


class CaseHost:
    """The host an operation sees: its facts come from the case, and only from it."""

    name = "case"

    def __init__(self, facts: dict[str, dict[str, Any]], data: dict[str, Any] | None = None):
        self.facts = facts
        self.data = data or {}  # the inventory's host data (e.g. _sudo, ssh_user)
        self.asked: set[tuple[str, str]] = set()

    def get_fact(self, cls, *args, **kwargs) -> Any:
        key = fact_key(args, kwargs)
        table = self.facts.get(cls.name)
        if table is None or key not in table:
            raise MissingFact(f"case gives no fact {cls.name} [{key}]")
        self.asked.add((cls.name, key))
        return table[key]


def show(command: Any) -> str | dict[str, str]:
    """A command as a case writes it: the exact shell string, or an upload with its text."""
    if isinstance(command, FileUploadCommand):
        if hasattr(command.src, "getvalue"):
            data = command.src.getvalue()
            text = data.decode() if isinstance(data, bytes) else data
            staged = command.remote_temp_filename
            where = {"staged_in": staged.rpartition("/")[0]} if staged else {}
            return {"upload": command.dest, **where, "content": text}
        return {"upload": command.dest, "src": str(command.src)}
    if isinstance(command, StringCommand):
        command = command.get_raw_value()
    if isinstance(command, str):
        script = command.removeprefix("sh -c ")
        if script != command and command == f"sh -c {shlex.quote(_unquote(script))}":
            return {"sh -c": _unquote(script)}
        return command
    raise TypeError(f"a case cannot show a {type(command).__name__}: {command!r}")


def _unquote(word: str) -> str:
    try:
        parts = shlex.split(word)
    except ValueError:
        return word
    return parts[0] if len(parts) == 1 else word


def run_operation(
    dotted: str,
    kwargs: dict[str, Any],
    facts: dict[str, dict[str, Any]],
    host_data: dict[str, Any] | None = None,
) -> list:
    """The commands operation `dotted` yields for these arguments, facts and host data."""
    op = _resolve(dotted)
    inner = getattr(op, "_inner", None)
    assert inner is not None, f"{dotted} is not a pyinfra operation"
    case_host = CaseHost(facts, host_data)
    with ctx_host.use(case_host):
        commands = [show(command) for command in inner(**kwargs)]
    unused = sorted(
        f"{name} [{key}]"
        for name, table in facts.items()
        for key in table
        if (name, key) not in case_host.asked
    )
    assert not unused, f"case gives facts the operation never asks for: {', '.join(unused)}"
    return commands


@pytest.mark.parametrize("path", _files("operations"), ids=_id)
def test_operation(path: Path):
    case = _load(path, OPERATION_KEYS)
    commands = run_operation(
        path.parent.name, case.get("kwargs", {}), case.get("facts", {}), case.get("host_data")
    )
    assert commands == case["commands"]


@pytest.mark.parametrize("path", _files("facts"), ids=_id)
def test_fact(path: Path):
    case = _load(path, FACT_KEYS)
    fact = _resolve(path.parent.name)()
    expected = case["command"]
    expected = "\n".join(expected) if isinstance(expected, list) else expected
    command = fact.command(**case.get("kwargs", {}))
    assert (command.get_raw_value() if isinstance(command, StringCommand) else command) == expected
    output = case["output"]
    assert (fact.process(output) if output else fact.default()) == case["fact"]


def test_cases_exist_for_every_kind():
    # An empty or misplaced cases folder would otherwise pass by running nothing.
    assert len(_files("operations")) >= 30 and len(_files("facts")) >= 15


def test_a_fact_the_case_does_not_give_fails_naming_it():
    with pytest.raises(MissingFact, match=r"no fact kubi\.facts\.ManagedFile \[path=/etc/x\]"):
        run_operation("kubi.ops.file", {"path": "/etc/x", "content": "x"}, {})


def test_a_fact_the_operation_never_asks_for_fails_naming_it():
    facts = {"kubi.facts.ServiceState": {"unit=nginx": {"active": True, "enabled": True}}}
    facts["deb.DebPackages"] = {"_": {}}
    with pytest.raises(AssertionError, match=r"never asks for: deb\.DebPackages \[_\]"):
        run_operation("kubi.ops.service", {"unit": "nginx"}, facts)


def test_unknown_keys_in_a_case_are_refused(tmp_path):
    case = tmp_path / "typo.json"
    case.write_text('{"kwargs": {}, "comands": []}')
    with pytest.raises(AssertionError, match=r"unknown keys \['comands'\], missing \['commands'\]"):
        _load(case, OPERATION_KEYS)
