"""Run the pyinfra CLI while counting SSH commands and uploads per host.

    python bench/counting_pyinfra.py COUNTS.json inventories/lab.py deploys/all.py -y

Every fact and every operation command is one `run_shell_command` (one SSH exec channel
over the host's single connection); every upload is one `put_file` (SFTP).
"""

from __future__ import annotations

import atexit
import json
import sys
from collections import Counter
from pathlib import Path

from pyinfra.api.host import Host

commands: Counter[str] = Counter()
uploads: Counter[str] = Counter()


def _count(counter: Counter[str], original):
    def wrapper(self, *args, **kwargs):
        counter[self.name] += 1
        return original(self, *args, **kwargs)

    return wrapper


Host.run_shell_command = _count(commands, Host.run_shell_command)  # type: ignore[method-assign]
Host.put_file = _count(uploads, Host.put_file)  # type: ignore[method-assign]

if __name__ == "__main__":
    out = Path(sys.argv.pop(1))
    atexit.register(lambda: out.write_text(json.dumps({"commands": commands, "uploads": uploads})))
    from pyinfra_cli.main import main

    sys.argv[0] = "pyinfra"
    sys.exit(main())
