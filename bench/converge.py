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

    sudo .venv/bin/python bench/converge.py --hosts 10 --breakdown

also prints, for each run, where its time went: pyinfra's stages, each component's plan
(slowest host) and execution, the slowest operations and facts, how long each host
waited for the others (an operation ends on all hosts before the next one starts), and the
CPU seconds the lab hosts and the deployer used: all lab hosts share this machine's cores,
so their total over the number of cores is the least time the run could take here.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from itertools import pairwise
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from kubi import lab  # noqa: E402


def lab_cpu() -> dict[str, float]:
    """CPU seconds each lab host used so far (its cgroup's accounting, v1 or v2)."""
    used: dict[str, float] = {}
    for group in lab.machine.group_dirs():
        for host in (p for p in group.glob(f"{lab.plan.HOST_PREFIX}*") if p.is_dir()):
            v1, v2 = host / "cpuacct.usage", host / "cpu.stat"
            if v1.is_file():
                used[host.name] = int(v1.read_text()) / 1e9
            elif v2.is_file() and "usage_usec" in (words := v2.read_text().split()):
                # (a v2 file without it: a hybrid machine's, whose v1 group counts)
                used[host.name] = int(words[words.index("usage_usec") + 1]) / 1e6
    return used


def converge(deploy: str) -> tuple[float, dict]:
    """Wall time of one `pyinfra -y` run and its record (bench/counting_pyinfra.py), with
    the CPU seconds the run cost: each lab host's (``cpu``) and the deployer's own."""
    with tempfile.NamedTemporaryFile(suffix=".json") as counts:
        before, deployer = lab_cpu(), resource.getrusage(resource.RUSAGE_CHILDREN)
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
            log = Path(tempfile.mkdtemp(prefix="kubi-bench-")) / "pyinfra.log"
            log.write_text(result.stdout + result.stderr)
            errors = [line for line in log.read_text().splitlines() if "rror" in line]
            sys.exit(f"pyinfra failed (all of its output: {log}):\n" + "\n".join(errors[-40:]))
        record = json.loads(Path(counts.name).read_text())
        after, ran = lab_cpu(), resource.getrusage(resource.RUSAGE_CHILDREN)
        record["cpu"] = {name: after[name] - before.get(name, 0.0) for name in after}
        record["deployer_cpu"] = (ran.ru_utime + ran.ru_stime) - (
            deployer.ru_utime + deployer.ru_stime
        )
        return elapsed, record


def per_host(counter: dict) -> str:
    values = list(counter.values()) or [0]
    low, high = min(values), max(values)
    return f"{statistics.mean(values):.0f} ({low}-{high})" if low != high else f"{low}"


def component_of(operation: str) -> str:
    """``<component> | <operation>`` -> the component (pyinfra's own operations: ``-``)."""
    return operation.split(" | ", 1)[0] if " | " in operation else "-"


def breakdown(title: str, wall: float, record: dict, top: int = 8) -> str:
    """Where the time of one run went, as text (see the module's docstring)."""
    lines = [f"\n### {title}: {wall:.1f} s\n"]
    marks = sorted(record["stages"].items(), key=lambda item: item[1]) + [("end", record["end"])]
    lines.append(
        "stages: "
        + ", ".join(f"{name} {end - start:.1f} s" for (name, start), (_, end) in pairwise(marks))
    )
    planned: dict[str, float] = defaultdict(float)
    for per_component in record["plan"].values():
        for component, seconds in per_component.items():
            planned[component] = max(planned[component], seconds)
    executed: dict[str, float] = defaultdict(float)
    waited: dict[str, float] = defaultdict(float)
    operations = []
    for op in record["ops"]:
        if "end" not in op:
            continue
        took = op["end"] - op["start"]
        executed[component_of(op["name"])] += took
        operations.append((took, op["name"], len(op["hosts"])))
        for host, done in op["hosts"].items():
            waited[host] += op["end"] - done
    lines.append("\n| component | plan (slowest host) | execute |\n|---|---|---|")
    for component in sorted(
        set(planned) | set(executed), key=lambda c: -(planned[c] + executed[c])
    ):
        lines.append(f"| {component} | {planned[component]:.1f} s | {executed[component]:.1f} s |")
    lines.append(f"\nslowest operations (of {len(operations)}):")
    for took, name, hosts in sorted(operations, reverse=True)[:top]:
        lines.append(f"  {took:6.1f} s  {name} ({hosts} hosts)")
    for stage, doing in (("prepare", "planning"), ("execute", "executing")):
        totals: dict[str, list[float]] = defaultdict(list)
        for _, fact, seconds, when in record["facts"]:
            if when == stage:
                totals[fact].append(seconds)
        calls = sum(len(times) for times in totals.values())
        lines.append(f"facts while {doing} ({calls} calls), by total time:")
        for fact, times in sorted(totals.items(), key=lambda item: -sum(item[1]))[:top]:
            lines.append(
                f"  {sum(times):6.1f} s  {fact}: {len(times)} calls, slowest {max(times):.2f} s"
            )
    if waited:
        lines.append(
            "waiting for the other hosts while executing: "
            + ", ".join(f"{host} {seconds:.1f} s" for host, seconds in sorted(waited.items()))
        )
    if record.get("cpu"):
        hosts, deployer, cores = sum(record["cpu"].values()), record["deployer_cpu"], _cores()
        lines.append(
            f"CPU: the lab hosts {hosts:.1f} s ("
            + ", ".join(f"{h} {s:.1f}" for h, s in sorted(record["cpu"].items()))
            + f"), the deployer {deployer:.1f} s: on {cores} cores, no run of this work "
            f"takes less than {(hosts + deployer) / cores:.1f} s"
        )
    return "\n".join(lines)


def _cores() -> int:
    return len(os.sched_getaffinity(0))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", type=int, action="append", help="lab sizes (default 5, 10)")
    parser.add_argument("--deploy", default="deploys/all.py")
    parser.add_argument("--control-planes", type=int, help="default: 3 from 7 hosts on, else 1")
    parser.add_argument(
        "--breakdown", action="store_true", help="also print where each run's time went"
    )
    args = parser.parse_args()
    rows = []
    reports = []
    for total in args.hosts or [5, 10]:
        lab.down(log=lambda _: None)
        start = time.monotonic()
        cps = args.control_planes or (3 if total >= 7 else 1)
        lab.up(total=total, control_planes=cps, log=lambda _: None)
        up = time.monotonic() - start
        first, first_counts = converge(args.deploy)
        again, again_counts = converge(args.deploy)
        rows.append((total, cps, up, first, again, first_counts, again_counts))
        reports.append(breakdown(f"{total} hosts, first converge", first, first_counts))
        reports.append(breakdown(f"{total} hosts, no-op re-run", again, again_counts))
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
    if args.breakdown:
        print("\n".join(reports))


if __name__ == "__main__":
    main()
