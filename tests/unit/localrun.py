"""Run a kubi operation for real against this machine's filesystem, without SSH.

Facts run their real shell command here; the operation's commands run in `sh`, uploads
are written to their destination. This proves the shell an operation generates, not just
its text, while the lab tier proves it over SSH on real hosts.
"""

from __future__ import annotations

import subprocess
from typing import Any

from pyinfra.api import FileUploadCommand, StringCommand
from pyinfra.context import ctx_host


class LocalHost:
    name = "localhost"

    def __init__(self):
        self.fact_calls: list[str] = []
        self.data: dict[str, Any] = {}  # the inventory's host data: none, as root

    def get_fact(self, cls, *args, **kwargs) -> Any:
        fact = cls()
        self.fact_calls.append(cls.name)
        command = fact.command(*args, **kwargs)
        command = command.get_raw_value() if isinstance(command, StringCommand) else command
        out = subprocess.run(["sh", "-c", command], capture_output=True, text=True, check=False)
        lines = out.stdout.splitlines()
        return fact.process(lines) if lines else fact.default()


class CommandFailed(Exception):
    def __init__(self, stderr: str):
        super().__init__(stderr)
        self.stderr = stderr


def run_op(op, **kwargs) -> list[str]:
    """Run operation `op` here; return the commands it ran ([] when nothing to do)."""
    return execute(plan_op(op, **kwargs))


def plan_op(op, **kwargs) -> list:
    """The commands operation `op` plans here, from facts read now; nothing is run."""
    with ctx_host.use(LocalHost()):
        return list(op._inner(**kwargs))


def execute(commands: list) -> list[str]:
    """Run planned commands here, as pyinfra executes them; stop at the first that fails."""
    ran = []
    for command in commands:
        if isinstance(command, FileUploadCommand):
            with open(command.dest, "wb") as dest:
                dest.write(command.src.getvalue())
            ran.append(f"upload {command.dest}")
            continue
        text = command.get_raw_value() if isinstance(command, StringCommand) else command
        result = subprocess.run(["sh", "-c", text], capture_output=True, text=True)
        ran.append(text)
        if result.returncode:
            raise CommandFailed(result.stderr)
    return ran
