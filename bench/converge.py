"""Converge benchmark: first converge and no-op re-run of deploys/all.py on N lab hosts.

    sudo .venv/bin/python bench/converge.py            # N = 5 and 10
    sudo .venv/bin/python bench/converge.py --hosts 5

Three control planes where the lab has room for them (7 hosts or more: input, output,
repository, three control planes, a worker), else one; `--control-planes` chooses.
With the Kubernetes binaries (docs/lab.md), the runs include the cluster.

For each N it re-creates the lab (fresh hosts), runs `pyinfra -y inventories/lab.py
deploys/all.py` twice and prints wall-clock times with the number of SSH commands per host
(facts + operation commands; uploads counted apart). A benchmark, not a test: it asserts
nothing beyond both runs succeeding.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from kubi import lab  # noqa: E402


def converge(deploy: str) -> tuple[float, dict]:
    with tempfile.NamedTemporaryFile(suffix=".json") as counts:
        start = time.monotonic()
        result = subprocess.run(
            [
                sys.executable,
                str(ROOT / "bench" / "counting_pyinfra.py"),
                counts.name,
                "-y",
                "inventories/lab.py",
                deploy,
            ],
            cwd=ROOT,
            capture_output=True,
            text=True,
            stdin=subprocess.DEVNULL,
        )
        elapsed = time.monotonic() - start
        if result.returncode:
            sys.exit(f"pyinfra failed:\n{result.stderr[-4000:]}")
        return elapsed, json.loads(Path(counts.name).read_text())


def per_host(counter: dict) -> str:
    values = list(counter.values()) or [0]
    low, high = min(values), max(values)
    return f"{statistics.mean(values):.0f} ({low}-{high})" if low != high else f"{low}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", type=int, action="append", help="lab sizes (default 5, 10)")
    parser.add_argument("--deploy", default="deploys/all.py")
    parser.add_argument("--control-planes", type=int, help="default: 3 from 7 hosts on, else 1")
    args = parser.parse_args()
    rows = []
    for total in args.hosts or [5, 10]:
        lab.down(log=lambda _: None)
        start = time.monotonic()
        cps = args.control_planes or (3 if total >= 7 else 1)
        lab.up(total=total, control_planes=cps, log=lambda _: None)
        up = time.monotonic() - start
        first, first_counts = converge(args.deploy)
        again, again_counts = converge(args.deploy)
        rows.append((total, cps, up, first, again, first_counts, again_counts))
        print(f"N={total}: up {up:.1f}s, first {first:.1f}s, no-op {again:.1f}s", file=sys.stderr)
    lab.down(log=lambda _: None)

    print(f"\n{args.deploy} on lab hosts; commands = SSH execs per host, mean (min-max)\n")
    print(
        "| hosts | control planes | lab up | first converge | commands | uploads | no-op re-run "
        "| commands |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for total, cps, up, first, again, fc, ac in rows:
        print(
            f"| {total} | {cps} | {up:.1f} s | {first:.1f} s | {per_host(fc['commands'])} | "
            f"{per_host(fc['uploads'])} | {again:.1f} s | {per_host(ac['commands'])} |"
        )


if __name__ == "__main__":
    main()
