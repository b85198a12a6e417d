"""Facts of the userspaces component: the people's kubeconfigs on the input host."""

from __future__ import annotations

import shlex

from pyinfra.api import FactBase

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
