"""apt-get and apt-cache on this machine against one repository, with a configuration of
their own (no machine source, key, preference or installed package counts), as a host's apt
would see that repository.
"""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def apt(folder: Path, sources: str, *command: str) -> subprocess.CompletedProcess:
    """Run `command` (apt-get, apt-cache...) with `sources` as the only sources.list and its
    state and cache in `folder`."""
    for sub in ("lists/partial", "cache/archives/partial", "parts"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    (folder / "status").touch()
    (folder / "sources.list").write_text(sources)
    settings = {
        "Dir::Etc::SourceList": folder / "sources.list",
        "Dir::Etc::SourceParts": folder / "parts",
        "Dir::Etc::Parts": folder / "parts",
        "Dir::Etc::Preferences": folder / "none",
        "Dir::Etc::PreferencesParts": folder / "parts",
        "Dir::Etc::Trusted": folder / "none",
        "Dir::Etc::TrustedParts": folder / "parts",
        "Dir::State::Lists": folder / "lists",
        "Dir::State::status": folder / "status",
        "Dir::Cache": folder / "cache",
        "Acquire::http::Proxy": "DIRECT",
        "APT::Sandbox::User": "root",
        "Debug::NoLocking": "true",
    }
    (folder / "apt.conf").write_text("".join(f'{k} "{v}";\n' for k, v in settings.items()))
    env = {"PATH": PATH, "LC_ALL": "C", "APT_CONFIG": str(folder / "apt.conf")}
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=120, cwd=folder)


def keyring_from(key_file: Path, fingerprint: str, keyring: Path) -> Path:
    """A keyring for `signed-by` holding only the key `fingerprint` of `key_file`, made as
    production makes it (kubi.aptsource.key_install_command): imported into a throw-away
    GnuPG home, then that key alone exported. Empty when the file has no such key."""
    with tempfile.TemporaryDirectory() as home:
        gpg = ["gpg", "--homedir", home, "--batch", "--quiet"]
        subprocess.run([*gpg, "--import", str(key_file)], capture_output=True, check=True)
        exported = subprocess.run([*gpg, "--export", fingerprint], capture_output=True, check=True)
        subprocess.run(["gpgconf", "--homedir", home, "--kill", "all"], capture_output=True)
    keyring.write_bytes(exported.stdout)
    return keyring
