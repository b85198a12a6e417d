"""An operator's bad day on real hosts: overlapping runs, another deployer holding a host,
an interrupted dpkg. Each test starts from the converged lab and leaves it converged."""

from __future__ import annotations

import fcntl
import os
import shlex
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from kubi import lab, runlock
from kubi.inventory import load

from .conftest import BIN, ROOT, address_of, changed_ops, failed_ops, pyinfra

pytestmark = pytest.mark.lab

# Something apt must fetch again on the next seed: removed, and out of the local archive.
REFETCH = "apt-get remove -y -q lsof >/dev/null 2>&1 && apt-get clean"


@pytest.fixture(scope="module")
def converged(lab_state):
    result = pyinfra("-y", "deploys/all.py")
    assert result.returncode == 0, result.stderr[-3000:]
    return lab_state


def _start(*args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [str(BIN / "pyinfra"), "inventories/lab.py", *args], cwd=ROOT,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True,
    )  # fmt: skip


def _deployer_lock_held() -> bool:
    path = load("inventories/lab.py").config.secrets_path / "deploy.lock"
    if not path.exists():
        return False
    with open(path) as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(handle, fcntl.LOCK_UN)
        return False


def test_a_second_run_stops_at_once_and_the_first_is_untouched(converged):
    first = _start("-y", "deploys/all.py")  # the longest run: still going when the next starts
    deadline = time.monotonic() + 60
    while not _deployer_lock_held():
        assert first.poll() is None and time.monotonic() < deadline, "the first run never locked"
        time.sleep(0.1)
    started = time.monotonic()
    second = pyinfra("-y", "deploys/seed.py")
    assert second.returncode == 3
    assert "kubi: platform lab is being deployed from this machine by " in second.stderr
    assert time.monotonic() - started < 15  # at once: before any host is touched
    out, err = first.communicate(timeout=600)
    assert first.returncode == 0, err[-3000:]


def test_overlapping_runs_never_damage_a_file(converged):
    for _ in range(4):
        runs = [_start("-y", "deploys/seed.py") for _ in range(3)]
        codes = sorted(run.wait(timeout=600) for run in runs)
        assert codes[0] == 0 and set(codes[1:]) <= {0, 3}, codes
    for host in converged.hosts:
        hosts = lab.run_on(host.address, "cat /etc/hosts").stdout.splitlines()
        assert "127.0.0.1 localhost" in [" ".join(line.split()[:2]) for line in hosts], host.name
        assert hosts.count("# BEGIN kubi") == 1 and hosts.count("# END kubi") == 1
        assert lab.run_on(host.address, "ls /etc/hosts.kubi-new").returncode != 0
    again = pyinfra("--json", "-y", "deploys/seed.py")
    assert again.returncode == 0 and changed_ops(again) == {}


def test_a_host_held_by_another_deployer_stops_the_run_until_unlocked(converged):
    worker = address_of(converged, "workers")
    lab.check_route(worker)
    other = "alice@elsewhere (pid 4242) since 2026-11-27 03:00:00 UTC, platform lab"
    holder = subprocess.Popen(
        lab.ssh_argv(worker, runlock.lock_script(other)),
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "locked"
        stopped = pyinfra("-y", "deploys/seed.py")
        assert stopped.returncode == 3
        said = stopped.stdout + stopped.stderr
        assert f"kubi: lab-worker1 is being deployed by another run: {other}" in said
        unlocked = subprocess.run(
            [str(BIN / "kubi"), "unlock", "lab-worker1", "--inventory", "inventories/lab.py"],
            cwd=ROOT, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert unlocked.returncode == 0 and f"ended the run of {other}" in unlocked.stdout
        assert holder.wait(timeout=30) is not None
    finally:
        holder.kill()
    assert pyinfra("-y", "deploys/seed.py").returncode == 0


def test_an_interrupted_dpkg_is_repaired_by_the_next_run(converged):
    worker = address_of(converged, "workers")
    # A dpkg killed mid-way leaves its journal; apt then refuses everything, as on the lab
    # after a host died during an install.
    broken = lab.run_on(
        worker,
        "DEBIAN_FRONTEND=noninteractive apt-get remove -y -q lsof >/dev/null"
        " && touch /var/lib/dpkg/updates/0000"
        " && DEBIAN_FRONTEND=noninteractive apt-get install -y -q lsof 2>&1",
    )
    assert "dpkg was interrupted" in broken.stdout
    repaired = pyinfra("--json", "-y", "deploys/seed.py", "--limit", "lab-worker1")
    assert repaired.returncode == 0, repaired.stderr[-3000:]
    changed = changed_ops(repaired)
    assert "finish the work of an interrupted dpkg (dpkg --configure -a)" in changed
    assert "base packages" in changed
    assert lab.run_on(worker, "ls -A /var/lib/dpkg/updates; command -v lsof").stdout.strip() == (
        "/usr/bin/lsof"
    )
    again = pyinfra("--json", "-y", "deploys/seed.py", "--limit", "lab-worker1")
    assert again.returncode == 0 and changed_ops(again) == {}


def test_a_file_nginx_refuses_is_named_and_other_hosts_converge(converged):
    repository = address_of(converged, "repository")
    stray = "/etc/nginx/streams.conf.d/zz-stray.conf"
    assert lab.run_on(repository, f"echo 'garbage {{' > {stray}").returncode == 0
    try:
        result = pyinfra("--json", "-y", "deploys/all.py")
        assert result.returncode != 0
        said = result.stdout + result.stderr
        assert f"kubi: nginx refuses {stray}:1" in said
        assert "fix or remove that file, then run again" in said
        failed = failed_ops(result)
        assert failed["nginx accepts its configuration"] == ["lab-repository"]
        # Only that host stopped (pyinfra counts its later operations as failed too).
        assert {host for hosts in failed.values() for host in hosts} == {"lab-repository"}
    finally:
        lab.run_on(repository, f"rm -f {stray}")
    again = pyinfra("--json", "-y", "deploys/all.py")
    assert again.returncode == 0 and changed_ops(again) == {}


def test_a_package_proxy_that_is_down_is_said_in_one_line(converged):
    repository, worker = address_of(converged, "repository"), address_of(converged, "workers")
    # Removed and out of the local archive, so apt must fetch it.
    assert lab.run_on(worker, REFETCH).returncode == 0
    assert lab.run_on(repository, "systemctl stop apt-cacher-ng").returncode == 0
    try:
        failed = pyinfra("-y", "deploys/seed.py", "--limit", "lab-worker1")
        assert failed.returncode != 0
        said = [line.strip() for line in (failed.stdout + failed.stderr).splitlines()]
        wanted = "kubi: apt could not connect to repository.lab.kubi.internal:3142"
        lines = [line for line in said if wanted in line]
        assert len(lines) == 1 and "Connection refused" in lines[0], said[-20:]
        assert "check that the package proxy or mirror there runs" in lines[0]
        assert not [line for line in said if line.startswith(("Err:", "E: ", "W: "))]
    finally:
        lab.run_on(repository, "systemctl start apt-cacher-ng")
    assert pyinfra("-y", "deploys/seed.py", "--limit", "lab-worker1").returncode == 0


def test_the_package_proxy_answers_at_once_after_a_restart(converged):
    repository = address_of(converged, "repository")
    # Lab hosts have no DNS: apt-cacher-ng given its upstream as an address stalled 17 s per
    # request, then answered "500 Remote or cache error", for 30-45 s after each start.
    fetched = lab.run_on(
        repository,
        "systemctl restart apt-cacher-ng && curl -s -o /dev/null --retry 50 --retry-connrefused"
        " --retry-delay 0 http://127.0.0.1:3142/ && curl -s -o /dev/null -m 30"
        " -w '%{http_code} %{time_total}' -x http://127.0.0.1:3142"
        " http://deb.debian.org/debian/dists/bookworm/Release",
    )
    code, seconds = fetched.stdout.split()
    assert code == "200" and float(seconds) < 1, fetched.stdout


def test_a_burst_of_dns_questions_is_answered_at_once(converged):
    # The kernel's "port unreachable" refusals are rate limited (about one a second per
    # host): the lab's DNS server answers instead (kubi.lab.dns). Without it, one question
    # of such a burst waited 5 s (glibc's timeout), and apt-cacher-ng's resolver 20 s.
    burst = (
        "import socket, time\n"
        "worst = 0.0\n"
        "for i in range(20):\n"
        "    started = time.monotonic()\n"
        "    try:\n"
        "        socket.getaddrinfo(f'kubi-nowhere-{i}.example', 80)\n"
        "    except socket.gaierror as exc:\n"
        "        assert exc.errno == socket.EAI_NONAME, exc\n"
        "    worst = max(worst, time.monotonic() - started)\n"
        "print(f'{worst:.2f}')\n"
    )
    asked = lab.run_on(address_of(converged, "repository"), f"python3 -c {shlex.quote(burst)}")
    assert asked.returncode == 0 and float(asked.stdout) < 1, asked.stdout + asked.stderr


WORKER = "lab-worker1"


def _hosts_in(failed: dict[str, list[str]]) -> set[str]:
    return {host for hosts in failed.values() for host in hosts}


def test_a_host_lost_while_planning_drops_out_and_the_others_converge(converged):
    worker = address_of(converged, "workers")
    # The firewall's fact runs nft while pyinfra plans: there, nft powers the host off.
    nft = lab.plan.host_dir(WORKER) / "merged/usr/sbin/nft"
    trap = "printf '#!/bin/sh\\npoweroff -ff\\n' > /usr/sbin/nft && chmod 755 /usr/sbin/nft"
    assert lab.run_on(worker, f"mv /usr/sbin/nft /usr/sbin/nft.real && {trap}").returncode == 0
    try:
        result = pyinfra("--json", "-y", "deploys/all.py")
    finally:
        os.replace(nft.with_name("nft.real"), nft)  # through its disk: the host is down
        lab.start([WORKER])
    assert result.returncode != 0
    said = result.stderr
    assert "Traceback" not in said, said[-3000:]
    lost = f"kubi: {WORKER} dropped out of this run while planning: its SSH connection was lost"
    assert said.count(lost) == 1
    assert f"kubi: 1 host(s) dropped out of this run: {WORKER} while planning." in said
    # The other hosts went through every operation (converged already: nothing to change).
    assert _hosts_in(failed_ops(result)) <= {WORKER} and changed_ops(result) == {}
    again = pyinfra("--json", "-y", "deploys/all.py")
    assert again.returncode == 0 and changed_ops(again) == {}


@pytest.mark.parametrize("kill", [False, True], ids=["poweroff", "power-cut"])
def test_a_host_lost_during_execution_is_said_once_and_the_others_converge(converged, kill):
    worker = address_of(converged, "workers")
    # Something for apt to fetch, so that the host dies during an operation; a file on its
    # disk, which `kubi lab stop` / `start` keep.
    prepared = lab.run_on(worker, f"{REFETCH} && touch /root/kept")
    assert prepared.returncode == 0
    run = _start("--json", "-y", "deploys/all.py")
    try:
        deadline = time.monotonic() + 120
        while lab.run_on(worker, "pgrep -f 'apt-get.*[i]nstall'", timeout=10).returncode != 0:
            assert run.poll() is None and time.monotonic() < deadline, "no install seen"
            time.sleep(0.1)
        lab.stop([WORKER], kill=kill, log=lambda line: None)
        cut = time.monotonic()
        out, err = run.communicate(timeout=300)
        # A power cut closes no connection: noticed by keepalives (kubi.dropout), where
        # the run used to wait for ever.
        assert time.monotonic() - cut < 90
    finally:
        run.kill()
        lab.start([WORKER], log=lambda line: None)
    assert run.returncode != 0
    assert "Traceback" not in err, err[-3000:]
    lost = f"kubi: {WORKER} dropped out of this run during 'seed | base packages'"
    assert err.count(lost) == 1, err[-3000:]
    assert f"kubi: 1 host(s) dropped out of this run: {WORKER} during" in err
    failed = failed_ops(subprocess.CompletedProcess([], 1, out, err))
    assert _hosts_in(failed) == {WORKER}
    assert lab.run_on(worker, "ls /root/kept").returncode == 0  # the same disk
    again = pyinfra("--json", "-y", "deploys/all.py")
    assert again.returncode == 0, again.stderr[-3000:]
    assert lab.run_on(worker, "command -v lsof").returncode == 0


def test_an_interrupted_run_exits_non_zero_and_a_rerun_converges(converged):
    worker = address_of(converged, "workers")
    # Something for apt to fetch, so that the run is busy on the host when interrupted.
    removed = lab.run_on(worker, REFETCH)
    assert removed.returncode == 0
    run = subprocess.Popen(
        [str(BIN / "pyinfra"), "inventories/lab.py", "-y", "deploys/seed.py", "--limit",
         "lab-worker1"], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 120
    seen = []
    for line in run.stdout:
        seen.append(line)
        if "Starting operation: seed | base packages" in line:
            break
        assert time.monotonic() < deadline, "".join(seen[-20:])
    run.send_signal(signal.SIGINT)
    err, _ = run.communicate(timeout=60)  # pyinfra's log and the summary, on one stream
    assert run.returncode == 130, err[-2000:]
    assert "kubi: interrupted: commands already started on the hosts run to their end" in err
    rerun = pyinfra("-y", "deploys/seed.py", "--limit", "lab-worker1")
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert lab.run_on(worker, "command -v lsof").returncode == 0


def test_the_lab_proxy_leaves_other_apt_cacher_ng_processes_alone(lab_state):
    """Another apt-cacher-ng on the machine (its own port and folders) keeps running while
    the lab restarts its own; `/etc/init.d/apt-cacher-ng restart` used to stop them all."""
    from kubi.lab import machine

    # Where apt-cacher-ng's account can read (a pytest folder is root's alone).
    neighbour = Path("/run/kubi-test-neighbour-proxy")
    shutil.rmtree(neighbour, ignore_errors=True)
    for folder in ("conf", "cache", "log"):
        (neighbour / folder).mkdir(parents=True)
    for source in machine.ACNG_DIR.iterdir():
        if source.is_file():
            (neighbour / "conf" / source.name).write_text(source.read_text())
    (neighbour / "conf" / "zz_kubi_lab.conf").unlink(missing_ok=True)
    subprocess.run(["chown", "-R", machine.ACNG_USER, str(neighbour)], check=True)
    settings = [f"{k}={neighbour / v}" for k, v in (
        ("CacheDir", "cache"), ("LogDir", "log"), ("PidFile", "pid"), ("SocketPath", "socket"),
    )]  # fmt: skip
    started = machine.start_apt_cacher_ng(
        neighbour / "conf", "Port=3151", "BindAddress=127.0.0.1", *settings
    )
    assert started.returncode == 0, started.stderr
    assert machine.wait(
        lambda: "127.0.0.1:3151" in lab.listening(machine.run("ss", "-Hltn").stdout), 15
    )
    pid = int((neighbour / "pid").read_text().split()[0])
    try:
        machine.stop_proxy()
        machine.ensure_proxy(lambda _: None)
        assert machine.proxy_serving()
        assert Path(f"/proc/{pid}").exists()  # the neighbour still runs
        assert "127.0.0.1:3151" in lab.listening(machine.run("ss", "-Hltn").stdout)
    finally:
        subprocess.run(["kill", str(pid)], check=False)
        shutil.rmtree(neighbour, ignore_errors=True)
