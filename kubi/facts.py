"""The facts kubi's own operations (`kubi.ops`) and helpers (`kubi.deploy`) read.

One shell command each, so a converged host costs one round trip per operation. Facts that
only one component reads live beside the deploys, in `facts/<component>.py`.
"""

from __future__ import annotations

import re
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

    The folders above it are judged as `folders_guard` judges them. An operation reads it
    again when it executes, on the host, right before its commands.
    """

    def command(self, path: str) -> str:
        return ManagedFiles().command((path,))

    def process(self, output: list[str]) -> dict[str, str] | None:
        return next(iter(ManagedFiles().process(output).values()), None)


class ManagedFiles(FactBase):
    """
    `ManagedFile` of several paths in one round trip: path -> what ManagedFile says.

    .. code:: python

        {"/etc/a.conf": {"type": "file", "mode": "644", ...}, "/etc/b.conf": None}

    A handful of processes whatever the number of paths (one `stat` of every folder above
    them, one `stat` and one `sha256sum` of the plain files): the host prints, and this
    side judges, so that a converged host's 20 files cost a few milliseconds, not 20 walks.
    """

    def command(self, paths: tuple[str, ...]) -> str:
        for path in paths:
            if not path.startswith("/") or "\n" in path or "\\" in path:
                raise ValueError(f"a managed file needs an absolute path on one line: {path!r}")
        quoted = " ".join(shlex.quote(path) for path in paths)
        folders = " ".join(
            shlex.quote(folder) for folder in dict.fromkeys(f for p in paths for f in _above(p))
        )
        return (
            f"echo \"u $(id -u)\"; printf 'p %s\\n' {quoted}; "
            # lstat: a folder that is a link shows as one (and is refused); missing: skipped
            f"stat -c 'd %u %A %n' -- {folders} 2>/dev/null; "
            f"set --; for p in {quoted}; do "
            'if [ -L "$p" ]; then echo "l $p"; elif [ -f "$p" ]; then set -- "$@" "$p"; '
            'elif [ -e "$p" ]; then echo "o $p"; fi; done; '
            "if [ $# -gt 0 ]; then stat -c 'f %a %U %G %n' -- \"$@\"; "
            "sha256sum -- \"$@\" | sed 's/^/s /'; fi; :"
        )

    def process(self, output: list[str]) -> dict[str, dict[str, str] | None]:
        uid, paths = "0", []
        folders: dict[str, tuple[str, str]] = {}
        kinds: dict[str, dict[str, str]] = {}
        sums: dict[str, str] = {}
        for line in output:
            tag, _, rest = line.partition(" ")
            if tag == "u":
                uid = rest
            elif tag == "p":
                paths.append(rest)
            elif tag == "d":
                owner, mode, folder = rest.split(" ", 2)
                folders[folder] = (owner, mode)
            elif tag in ("l", "o"):
                kinds[rest] = {"type": "symlink" if tag == "l" else "other"}
            elif tag == "f":
                mode, user, group, name = rest.split(" ", 3)
                kinds[name] = {"type": "file", "mode": mode, "user": user, "group": group}
            elif tag == "s":  # GNU's format: a name with \\ or a newline is escaped
                digest, _, name = rest.partition("  ")
                if digest.startswith("\\"):
                    digest = digest[1:]
                    name = re.sub(r"\\(.)", lambda m: "\n" if m[1] == "n" else m[1], name)
                sums[name] = digest
        found: dict[str, dict[str, str] | None] = {}
        for path in paths:
            unsafe = _unsafe_folder(path, folders, uid)
            kind = kinds.get(path)
            if unsafe is not None:
                found[path] = unsafe
            elif kind is None or (kind["type"] == "file" and path not in sums):
                found[path] = None  # absent (or gone between the two looks)
            elif kind["type"] == "file":
                found[path] = {**kind, "sha256": sums[path]}
            else:
                found[path] = kind
        return found


def _above(path: str) -> list[str]:
    """The folders above `path`, its own first, up to / (as `dirname` walks them)."""
    folders = [path.rsplit("/", 1)[0] or "/"]
    while folders[-1] != "/":
        folders.append(folders[-1].rsplit("/", 1)[0] or "/")
    return folders


def _unsafe_folder(
    path: str, folders: dict[str, tuple[str, str]], uid: str
) -> dict[str, str] | None:
    """The first folder above `path` that another user controls, by `folders_guard`'s rule
    (owned by root or the user, group and others may not write; above its own folder, a
    sticky one is safe too), from each existing folder's owner and `ls` mode."""
    above = _above(path)
    for folder in above:
        if folder not in folders:
            continue  # missing: made later by root, inside a folder checked here
        owner, mode = folders[folder]
        ours = owner in ("0", uid) and len(mode) == 10 and mode[0] == "d"
        if ours and mode[5] == "-" and mode[8] == "-":
            continue
        if ours and mode[9] in "tT" and folder != above[0]:
            continue
        return {"type": "unsafe", "folder": folder, "owner": owner, "mode": mode}
    return None


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
