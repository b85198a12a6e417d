"""Bridge between a platform description and pyinfra's inventory.

An inventory file (`inventories/<env>.py`) calls `declare(...)` and publishes the groups it
returns. Validation happens right there, while pyinfra loads the inventory, so a bad
description stops `pyinfra inventories/x.py deploys/...` before any SSH connection is made.

    from kubi.inventory import declare

    platform = declare(__file__, name="prod", groups={...}, ...)
    globals().update(platform.pyinfra_groups())
"""

from __future__ import annotations

import runpy
import sys
from pathlib import Path
from typing import Any

from kubi.config import ROLES, ConfigError, Platform, validate

# The platform declared by the inventory loaded in this process (one per pyinfra run).
_current: DeclaredPlatform | None = None


class DeclaredPlatform:
    """A validated platform plus what pyinfra needs to reach its hosts."""

    def __init__(self, config: Platform, source: str):
        self.config = config
        self.source = source

    def host_data(self, name: str) -> dict[str, Any]:
        """pyinfra connection data for one host (nothing else: deploys read the config)."""
        host = self.config.host(name)
        ssh = self.config.ssh
        data: dict[str, Any] = {
            "ssh_hostname": host.address,
            "ssh_user": host.ssh_user,
            "ssh_port": host.ssh_port,
            "ssh_strict_host_key_checking": ssh.strict_host_key_checking,
            "ssh_connect_timeout": ssh.connect_timeout,
        }
        if host.ssh_key:
            data["ssh_key"] = str(host.ssh_key)
        if host.ssh_user != "root":
            data["_sudo"] = True  # an admin account: every operation runs through sudo
        if ssh.known_hosts_file:
            data["ssh_known_hosts_file"] = ssh.known_hosts_file
        return data

    def pyinfra_groups(self) -> dict[str, list[tuple[str, dict[str, Any]]]]:
        """One pyinfra group per role, each host with its connection data."""
        return {
            role: [(h.name, self.host_data(h.name)) for h in self.config.role(role)]  # type: ignore[arg-type]
            for role in ROLES
        }


def declare(inventory_file: str | None = None, **description: Any) -> DeclaredPlatform:
    """Validate a platform description and remember it for the deploys of this run.

    + inventory_file: the inventory's `__file__`, named in error messages
    + description: the fields of `kubi.config.Description` (name, groups, group_data, ...)

    Under the pyinfra CLI an invalid description prints every problem and exits (status 2)
    before pyinfra connects anywhere; elsewhere it raises `ConfigError`.
    """
    global _current
    source = _display(inventory_file) if inventory_file else "platform"
    try:
        config = validate(description, source=source)
    except ConfigError as exc:
        if _under_pyinfra_cli():
            print(exc.render(), file=sys.stderr)
            # SystemExit passes through pyinfra's inventory loader untouched.
            raise SystemExit(2) from None
        raise
    _current = DeclaredPlatform(config, source)
    if _under_pyinfra_cli():
        _exit_nonzero_when_interrupted()
        from kubi import dropout

        dropout.install()  # a host lost mid-run drops out with one line, the others go on
        # One run per platform from this machine (kubi.runlock); the hosts lock their own.
        from kubi.runlock import RunLocked, lock_deployer

        try:
            lock_deployer(config.name, config.secrets_path)
        except RunLocked as exc:
            print(exc, file=sys.stderr)
            raise SystemExit(3) from None
    return _current


def current() -> Platform:
    """The platform of the inventory this run loaded (for deploy code)."""
    return declared().config


def declared() -> DeclaredPlatform:
    """The platform of this run with its hosts' connection data (for kubi's own SSH)."""
    if _current is None:
        raise RuntimeError(
            "no kubi platform is declared: run the deploy with a kubi inventory, "
            "e.g. `pyinfra inventories/lab.py deploys/seed.py`"
        )
    return _current


def load(inventory_file: str | Path) -> DeclaredPlatform:
    """Run an inventory file outside pyinfra (CLI, tests) and return what it declared."""
    global _current
    path = Path(inventory_file)
    if not path.is_file():
        raise ConfigError([f"inventory file {path} does not exist"], str(path))
    _current = None
    try:
        runpy.run_path(str(path))
    except ConfigError:
        raise
    except Exception as exc:  # the inventory's own code: where and what, never its values
        raise ConfigError([_load_failure(exc, path)], str(path)) from None
    if _current is None:
        raise ConfigError(
            ["the file declares no platform: call kubi.inventory.declare(__file__, ...)"], str(path)
        )
    return _current


# Their messages name only identifiers and places, never a value of the description.
_SAFE_MESSAGES = (SyntaxError, NameError, ImportError, AttributeError)


def _load_failure(exc: Exception, path: Path) -> str:
    """One line for an inventory that failed to run: the error's type and where."""
    line = None
    if isinstance(exc, SyntaxError) and exc.filename == str(path):
        line = exc.lineno
    tb = exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == str(path):
            line = tb.tb_lineno
        tb = tb.tb_next
    where = f"line {line}" if line else "while loading"
    what = type(exc).__name__
    if isinstance(exc, _SAFE_MESSAGES):
        what += f": {exc.msg if isinstance(exc, SyntaxError) else exc}"
    return f"the inventory file failed to run ({what}, {where}): fix the file"


def _display(path: str) -> str:
    try:
        return str(Path(path).resolve().relative_to(Path.cwd()))
    except ValueError:
        return path


INTERRUPTED = (
    "kubi: interrupted: commands already started on the hosts run to their end (an apt-get "
    "may hold its lock for a minute or two), nothing else starts; run again to converge"
)


def _exit_nonzero_when_interrupted() -> None:
    """pyinfra's CLI exits 0 on Ctrl+C ("Exiting upon user request!"): a script or CI job
    would take an interrupted run for a finished one. Exit 130, as a shell does."""
    import signal

    def interrupted(signum: int, frame: Any) -> None:
        print(INTERRUPTED, file=sys.stderr)
        sys.exit(128 + signum)

    signal.signal(signal.SIGINT, interrupted)


def _under_pyinfra_cli() -> bool:
    import pyinfra

    return bool(getattr(pyinfra, "is_cli", False))
