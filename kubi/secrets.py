"""Generated secrets of a platform, kept outside the repository with owner-only access.

Secrets (passwords, keys) are generated on first use and stored one per file in the
platform's secrets directory (`Platform.secrets_path`, mode 0700, files 0600). They are
read back on every run, so a converge is repeatable, and they are never printed.
"""

from __future__ import annotations

import os
import re
import secrets as _random
import tempfile
from collections.abc import Callable
from pathlib import Path

from kubi.config import Platform

_NAME = re.compile(r"[a-z0-9][a-z0-9._-]*")


def new_password() -> str:
    """A random password (32 URL-safe characters, ~190 bits)."""
    return _random.token_urlsafe(24)


class Secrets:
    """One directory of secret files."""

    def __init__(self, directory: Path):
        self.directory = directory

    def path(self, name: str) -> Path:
        if not _NAME.fullmatch(name):
            raise ValueError(f"secret name {name!r}: use lower-case letters, digits, '.', '-', '_'")
        return self.directory / name

    def exists(self, name: str) -> bool:
        return self.path(name).is_file()

    def read(self, name: str) -> str:
        return self.path(name).read_text()

    def write(self, name: str, content: str) -> Path:
        """Store atomically with mode 0600 (the file never exists with wider access)."""
        path = self.path(name)
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(self.directory, 0o700)
        fd, tmp = tempfile.mkstemp(dir=self.directory, prefix=".tmp-")
        try:
            with os.fdopen(fd, "w") as handle:  # mkstemp creates the file 0600
                handle.write(content)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return path

    def remove(self, name: str) -> None:
        self.path(name).unlink(missing_ok=True)

    def get(self, name: str, generate: Callable[[], str] = new_password) -> str:
        """The secret `name`, generated and stored on first use."""
        if not self.exists(name):
            self.write(name, generate())
        return self.read(name)


def for_platform(platform: Platform) -> Secrets:
    return Secrets(platform.secrets_path)
