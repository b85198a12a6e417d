"""The facts kubi's own operations (`kubi.ops`) and helpers (`kubi.deploy`) read.

One shell command each, so a converged host costs one round trip per operation. Facts that
only one component reads live beside the deploys, in `facts/<component>.py`.
"""

from __future__ import annotations

import shlex

from pyinfra.api import FactBase


def folders_guard(path: str, on_unsafe: str) -> str:
    """Shell that walks every existing folder above `path`, up to /, on the host, without
    following a symbolic link, and runs `on_unsafe` (with ``$d`` the folder and ``$a`` its
    ``uid mode``) at the first one another user controls.

    A folder is safe when it is a real folder (not a symbolic link) owned by root (or by the
    user running the command) that neither its group nor others may write: then no other
    user can put a link or another file in its place, so what was checked stays true until
    the command acts. Above the file's own folder, a sticky folder (/tmp) is also safe:
    others cannot rename or remove what they do not own in it. Missing folders are skipped:
    they are created later by root, inside a folder checked here.
    """
    parent = shlex.quote(path.rsplit("/", 1)[0] or "/")
    return (
        f"u=$(id -u); k=; d={parent}; while :; do "
        'if [ -e "$d" ] || [ -L "$d" ]; then a=$(stat -c \'%u %A\' "$d") || exit 1; '
        'case "$a" in "0 d"????-??-?|"$u d"????-??-?) ;; '
        f'"0 d"????????[tT]|"$u d"????????[tT]) [ "$d" != {parent} ] || k=1;; *) k=1;; esac; '
        f'if [ -n "$k" ]; then {on_unsafe}; fi; fi; '
        '[ "$d" = / ] && break; d=$(dirname "$d"); done'
    )


class ManagedFile(FactBase):
    """
    A file kubi manages, read without following a symbolic link, in one round trip:

    .. code:: python

        {"type": "file", "mode": "644", "user": "root", "group": "root", "sha256": "9f86d0..."}
        None                        # absent
        {"type": "symlink"}         # a symbolic link: kubi refuses to act through it
        {"type": "other"}           # a folder, a fifo...: refused too
        {"type": "unsafe", "folder": "/home/alice/.ssh", "owner": "1000", "mode": "drwx------"}
                                    # a folder above it that another user controls: refused

    An operation reads it again when it executes, on the host, right before its commands.
    """

    def command(self, path: str) -> str:
        p = shlex.quote(path)
        return (
            folders_guard(path, 'echo "unsafe $a $d"; exit 0')
            + f"; if [ -L {p} ]; then echo symlink; elif [ -f {p} ]; then "
            f"stat -c '%a %U %G' {p} && sha256sum {p}; elif [ -e {p} ]; then echo other; fi"
        )

    def process(self, output: list[str]) -> dict[str, str] | None:
        if not output:
            return None
        first = output[0]
        if first.startswith("unsafe "):
            owner, mode, folder = first.split(" ", 3)[1:]
            return {"type": "unsafe", "folder": folder, "owner": owner, "mode": mode}
        if first in ("symlink", "other"):
            return {"type": first}
        if len(output) < 2:
            return None
        mode, user, group = first.split()
        return {
            "type": "file",
            "mode": mode,
            "user": user,
            "group": group,
            "sha256": output[1].split()[0],
        }


class ManagedFiles(FactBase):
    """
    `ManagedFile` of several paths in one round trip: path -> what ManagedFile says.

    .. code:: python

        {"/etc/a.conf": {"type": "file", "mode": "644", ...}, "/etc/b.conf": None}
    """

    def command(self, paths: tuple[str, ...]) -> str:
        one = ManagedFile()
        return "\n".join(
            f"echo {shlex.quote(f'@@ {path}')}; ( {one.command(path)} )" for path in paths
        )

    def process(self, output: list[str]) -> dict[str, dict[str, str] | None]:
        found: dict[str, dict[str, str] | None] = {}
        path: str | None = None
        lines: list[str] = []
        for line in [*output, "@@ "]:
            if line.startswith("@@ "):
                if path is not None:
                    found[path] = ManagedFile().process(lines)
                path, lines = line[3:], []
            else:
                lines.append(line)
        return found


# Run as each person (runuser sets HOME from the passwd entry): root never opens a path in
# a home, which its owner could point anywhere. A link or anything else than a plain file
# is "other": never kubi's.
_AS_PERSON = r"""
f="$HOME/$1"
if [ -f "$f" ] && [ ! -L "$f" ]; then
  if [ "$(head -n 1 "$f")" = "$2" ]; then echo "kubi $(sha256sum < "$f" | cut -d ' ' -f 1)"
  else echo other; fi
elif [ -e "$f" ] || [ -L "$f" ]; then echo other
else echo absent; fi
"""


class HomeFiles(FactBase):
    """
    One file in each person's home, as that person sees it, in one round trip: ``absent``,
    ``other`` (not written by kubi: its first line is not `marker`), or kubi's with the
    sha256 of its content; ``nouser`` for a name without an account.

    .. code:: python

        {"alice": ("kubi", "9f86d0..."), "bob": ("absent", None), "carol": ("other", None)}
    """

    def command(self, people: tuple[str, ...], path: str, marker: str) -> str:
        script = shlex.quote(_AS_PERSON)
        lines = []
        for person in people:
            who = shlex.quote(person)
            lines.append(
                f"if id -u {who} >/dev/null 2>&1; then "
                f"printf '%s %s\\n' {who} \"$(runuser -u {who} -- sh -c {script} sh "
                f'{shlex.quote(path)} {shlex.quote(marker)} 2>/dev/null || echo unreadable)"; '
                f"else echo {who} nouser; fi"
            )
        return "\n".join(lines)

    def process(self, output: list[str]) -> dict[str, tuple[str, str | None]]:
        found: dict[str, tuple[str, str | None]] = {}
        for line in output:
            words = line.split()
            if len(words) == 3 and words[1] == "kubi":
                found[words[0]] = ("kubi", words[2])
            elif len(words) == 2:
                found[words[0]] = (words[1], None)
        return found


class ServiceState(FactBase):
    """
    Whether a systemd unit is active and enabled, in one round trip:

    .. code:: python

        {"active": True, "enabled": True}   # or {"active": False, "enabled": None} if unknown
    """

    def command(self, unit: str) -> str:
        u = shlex.quote(unit)
        return f"echo active=$(systemctl is-active {u}); echo enabled=$(systemctl is-enabled {u})"

    def process(self, output: list[str]) -> dict:
        raw = dict(line.split("=", 1) for line in output if "=" in line)
        enabled = raw.get("enabled", "")
        return {
            "active": raw.get("active") == "active",
            # is-enabled prints nothing (or "not-found") for a unit that is not installed yet.
            "enabled": True
            if enabled in ("enabled", "enabled-runtime", "alias")
            else (False if enabled in ("disabled", "masked") else None),
        }


class PrimaryIPv4(FactBase):
    """The host's first global IPv4 address (used when the config gives no ``ip``)."""

    def command(self) -> str:
        return "ip -4 -o addr show scope global | awk '{split($4, a, \"/\"); print a[1]; exit}'"

    def process(self, output: list[str]) -> str | None:
        return output[0].strip() if output else None
