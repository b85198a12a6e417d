"""Error rendering: every problem of a description in the user's terms.

Pydantic reports locations like ``('groups', 'workers', 1, 1, 'ssh_usr')``; users think in
groups, hosts and fields. Each message names the group or host, the field and what to do,
and never echoes a value that may be a secret.
"""

from __future__ import annotations

import difflib
from typing import Any

from pydantic import BaseModel

from kubi.roles import ROLES

# Location parts whose values are never shown back (a pasted private key, a password).
SECRET_FIELDS = frozenset({"keys", "password", "token", "secret", "tls_key", "key", "ssh_key"})
# Longest value repeated in a message; a longer one may be pasted key material.
SHOWN_MAX = 80


def looks_like_key_material(value: str) -> bool:
    """A PEM block, several lines or a long blob: what a pasted key or certificate looks
    like. Never echoed in a message."""
    return "-----BEGIN" in value or "\n" in value or "\r" in value or len(value) > 200


def showable(value: Any) -> bool:
    """Whether a value may be repeated in a message: a short, single-line scalar that does
    not look like key material (a PEM block, a long blob). Shown with repr(), so a control
    character appears escaped, never raw."""
    if isinstance(value, (bool, int, float)):
        return True
    return isinstance(value, str) and len(value) <= SHOWN_MAX and not looks_like_key_material(value)


def label(value: Any) -> str:
    """repr() of a name written in the description, or a placeholder when it may not be
    shown (too long, several lines, key material)."""
    return repr(value) if showable(value) else "(not shown)"


class ConfigError(Exception):
    """Raised with every problem of a platform description, one per line."""

    def __init__(self, problems: list[str], source: str = "platform"):
        self.problems = problems
        self.source = source
        super().__init__(self.render())

    def render(self) -> str:
        head = f"{self.source}: {len(self.problems)} problem(s) in the platform description"
        return "\n".join([head, *(f"  - {p}" for p in self.problems)])


def host_name(entry: Any) -> str | None:
    """The name of a host entry as written (a name, or (name, data))."""
    if isinstance(entry, str):
        return entry
    if isinstance(entry, (tuple, list)) and entry and isinstance(entry[0], str):
        return entry[0]
    return None


def describe(
    err: Any, raw: dict[str, Any], sections: dict[str, type[BaseModel]], top: type[BaseModel]
) -> str:
    """One pydantic error as one line; `sections` maps a top-level key to its model (for
    'did you mean'), `top` is the model of the whole description."""
    loc = list(err["loc"])
    where = _where(loc, raw)
    if err["type"] == "extra_forbidden":
        return f"{where}: unknown field{_suggest(loc, sections, top)}"
    if err["type"] == "missing":
        return f"{where}: required field is missing"
    if err["type"] == "literal_error" and loc[:1] in (["groups"], ["group_data"]):
        return f"{where}: unknown role group; the groups are {', '.join(ROLES)}"
    message = err["msg"].removeprefix("Value error, ")
    value = err.get("input")
    secret = any(str(part) in SECRET_FIELDS for part in loc)
    shown = f" (got {value!r})" if showable(value) and not secret else ""
    return f"{where}: {message}{shown}"


def _where(loc: list[Any], raw: dict[str, Any]) -> str:
    """Name the group/host/field of an error location in the user's terms."""
    # A location holds the description's own keys (a component name, a group): shown only
    # when short; repr() below escapes any control character.
    loc = [p if showable(p) else "(not shown)" for p in loc]
    if len(loc) >= 2 and loc[0] == "groups":
        role = loc[1]
        if len(loc) == 2 or loc[2] == "[key]":
            return f"group {role!r}"
        entries = raw.get("groups", {}).get(role) or []
        index = loc[2]
        found = isinstance(index, int) and index < len(entries)
        name = host_name(entries[index]) if found else None
        number = index + 1 if isinstance(index, int) else index
        host = f"host {name!r}" if isinstance(name, str) and showable(name) else f"host #{number}"
        # loc tail: (0,) for the name, (1, field...) for the host data
        tail = loc[3:]
        if tail[:1] == [0]:
            return f"{host} (group {role!r}), its name"
        fields = [str(p) for p in tail[1:]]
        return f"{host} (group {role!r})" + (f", field {'.'.join(fields)!r}" if fields else "")
    if len(loc) >= 2 and loc[0] == "users" and isinstance(loc[1], int):
        users = raw.get("users") or []
        entry = users[loc[1]] if loc[1] < len(users) else None
        name = entry.get("name") if isinstance(entry, dict) else None
        who = (
            f"user {name!r}" if isinstance(name, str) and showable(name) else f"user #{loc[1] + 1}"
        )
        field = ".".join(str(p) for p in loc[2:])
        return who + (f", field {field!r}" if field else "")
    if len(loc) >= 2 and loc[0] == "group_data":
        if loc[2:] == ["[key]"]:
            return f"group_data {loc[1]!r}"
        field = ".".join(str(p) for p in loc[2:])
        return f"group_data {loc[1]!r}" + (f", field {field!r}" if field else "")
    return "field " + repr(".".join(str(p) for p in loc))


def _suggest(loc: list[Any], sections: dict[str, type[BaseModel]], top: type[BaseModel]) -> str:
    """'did you mean' for a misspelt key, from the fields of the model it belongs to."""
    key = str(loc[-1])
    model = sections.get(str(loc[0])) if len(loc) > 1 else top
    if model is None:
        return ""
    known = list(model.model_fields)
    close = difflib.get_close_matches(key, known, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return f"{hint}; known fields: {', '.join(known)}"
