"""People on real hosts: the bastion's accounts and forwarding rules, and the cockpit.

Everything goes through the real sshd of the lab hosts with the lab people's own keys.
"""

from __future__ import annotations

import shlex
import subprocess
import textwrap

import pytest

from kubi import components, lab
from kubi.inventory import load

from .conftest import ROOT, address_of, changed_ops, pyinfra

pytestmark = pytest.mark.lab

HTTP_GET = "GET / HTTP/1.0\r\nHost: {host}\r\n\r\n"


@pytest.fixture(scope="module")
def converged(lab_state):
    result = pyinfra("--json", "-y", "deploys/all.py")
    assert result.returncode == 0, result.stderr[-4000:]
    return lab_state


@pytest.fixture(scope="module")
def ssh_config(converged, tmp_path_factory):
    lines = []
    for host in converged.hosts:
        lab.check_route(host.address)  # the safety rule, before any connection
        lines += [f"Host {host.name}", f"  HostName {host.address}"]
    for name, _ in lab.LAB_PEOPLE:
        lines += [f"Match user {name}", f"  IdentityFile {lab.person_key(name)}"]
    lines += [
        "Host *",
        "  IdentitiesOnly yes",
        f"  UserKnownHostsFile {lab.known_hosts_file()}",
        "  StrictHostKeyChecking yes",
        "  BatchMode yes",
        "  ConnectTimeout 5",
        "  LogLevel ERROR",
    ]
    path = tmp_path_factory.mktemp("people") / "ssh_config"
    path.write_text("\n".join(lines) + "\n")
    return path


def ssh(config, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["ssh", "-F", str(config), *args], capture_output=True, text=True, timeout=30,
        stdin=subprocess.DEVNULL,
    )  # fmt: skip


def test_operator_logs_in_and_jumps_to_another_host(ssh_config):
    assert ssh(ssh_config, "lab-ops@lab-input", "id -un").stdout.strip() == "lab-ops"
    jumped = ssh(ssh_config, "-J", "lab-ops@lab-input", "lab-ops@lab-cp1", "hostname")
    assert jumped.returncode == 0, jumped.stderr
    assert jumped.stdout.strip() == "lab-cp1"
    assert (
        ssh(ssh_config, "-J", "lab-ops@lab-input", "lab-ops@lab-cp1", "sudo -n true").returncode
        == 0
    )


def test_developer_cannot_jump(ssh_config):
    assert ssh(ssh_config, "lab-dev@lab-input", "id -un").stdout.strip() == "lab-dev"
    refused = ssh(ssh_config, "-J", "lab-dev@lab-input", "lab-ops@lab-cp1", "hostname")
    assert refused.returncode != 0
    # sshd refuses the channel ("administratively prohibited"): the jump cannot start.
    assert "stdio forwarding failed" in refused.stderr
    # And developers have no account anywhere else.
    direct = ssh(ssh_config, "lab-dev@lab-cp1", "true")
    assert direct.returncode == 255 and "Permission denied" in direct.stderr


def test_no_password_login(ssh_config):
    attempt = ssh(
        ssh_config, "-o", "PubkeyAuthentication=no", "-o", "PreferredAuthentications=password",
        "lab-ops@lab-input", "true",
    )  # fmt: skip
    assert attempt.returncode == 255
    assert "Permission denied (publickey)" in attempt.stderr


def http_through_forward(config, person: str, host: str) -> str:
    """GET / through `ssh -W`, the same channel `ssh -L 8080:127.0.0.1:8080` opens.

    stdin stays open until nginx has answered: closing it early would end the request.
    """
    proc = subprocess.Popen(
        ["ssh", "-F", str(config), "-W", "127.0.0.1:8080", f"{person}@lab-input"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    proc.stdin.write(HTTP_GET.format(host=host))
    proc.stdin.flush()
    try:
        answer = proc.stdout.read()  # nginx closes an HTTP/1.0 connection after answering
    finally:
        proc.stdin.close()
        proc.wait(timeout=30)
    return answer


@pytest.mark.parametrize("person", ["lab-ops", "lab-dev"])
def test_one_forward_reaches_the_cockpit_and_every_ui(ssh_config, converged, person):
    page = http_through_forward(ssh_config, person, "localhost")
    assert page.startswith("HTTP/1.1 200"), page[:200]
    uis = [route.name for route in load(ROOT / "inventories" / "lab.py").config.ui_routes]
    assert "graylog" in uis  # the dashboard's too, where the lab holds its image
    for ui in uis:
        assert f"http://{ui}.localhost:8080/" in page
        # The route exists: nginx answers for the UI (a 502 while the UI itself is not
        # running: the lab leaves the log stack out when its repositories are unreachable).
        answer = http_through_forward(ssh_config, person, f"{ui}.localhost")
        assert answer.startswith(("HTTP/1.1 200", "HTTP/1.1 502")), (ui, answer[:200])
    # An add-on that is not there, or off, has no route: its name gets the landing page.
    off = [r.name for c in components.COMPONENTS for r in c.ui if r.name not in uis]
    for name in ["grafana", *off]:
        other = http_through_forward(ssh_config, person, f"{name}.localhost")
        assert other.startswith("HTTP/1.1 200") and f"{name}.localhost" not in other, name


def test_cockpit_is_not_reachable_from_other_hosts(converged):
    input_host = next(h for h in converged.hosts if h.role == "input")
    worker = next(h for h in converged.hosts if h.role == "workers")
    for port in (8080, 6443):
        probe = lab.run_on(
            worker.address, f"curl -s --max-time 3 http://{input_host.address}:{port}/"
        )
        assert probe.returncode == 7, (port, probe.returncode)  # connection refused


def test_person_removed_from_the_config_loses_the_account(converged, ssh_config, tmp_path):
    temp_key = tmp_path / "id_temp"
    public = temp_key.with_suffix(".pub")
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", temp_key], check=True)
    # A variant of the lab inventory with one more person (the inventory is plain Python).
    inventory = tmp_path / "lab_extra_person.py"
    inventory.write_text(textwrap.dedent(f"""\
        from kubi import lab
        from kubi.inventory import declare

        description = lab.platform_description(lab.load_state())
        description["users"].append(
            {{"name": "lab-temp", "role": "dev", "keys": [{public.read_text()!r}]}}
        )
        globals().update(declare(__file__, **description).pyinfra_groups())
    """))  # fmt: skip
    try:
        added = pyinfra("-y", "deploys/bastion.py", inventory=str(inventory))
        assert added.returncode == 0, added.stderr[-3000:]
        login = ssh(ssh_config, "-i", str(temp_key), "lab-temp@lab-input", "id -un")
        assert login.stdout.strip() == "lab-temp", login.stderr
    finally:
        inventory.unlink()
    removed = pyinfra("--json", "-y", "deploys/bastion.py")
    assert removed.returncode == 0, removed.stderr[-3000:]
    assert "remove account lab-temp (no longer in the config)" in changed_ops(removed)
    gone = ssh(ssh_config, "-i", str(temp_key), "lab-temp@lab-input", "true")
    assert gone.returncode == 255
    input_host = next(h for h in converged.hosts if h.role == "input")
    assert lab.run_on(input_host.address, "test -e /home/lab-temp").returncode == 1


def _as_developer(ssh_config, command: str) -> subprocess.CompletedProcess:
    return ssh(ssh_config, "lab-dev@lab-input", command)


def test_a_key_a_developer_adds_to_their_own_home_does_not_log_in(converged, ssh_config, tmp_path):
    own = tmp_path / "id_own"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", own], check=True)
    public = own.with_suffix(".pub").read_text().strip()
    added = _as_developer(
        ssh_config,
        f"mkdir -p -m 700 ~/.ssh && echo {shlex.quote(public)} >> ~/.ssh/authorized_keys",
    )
    assert added.returncode == 0, added.stderr
    # The same settings, with the developer's own key instead of the configured one.
    own_config = tmp_path / "ssh_config_own"
    own_config.write_text(
        ssh_config.read_text().replace(
            f"IdentityFile {lab.person_key('lab-dev')}", f"IdentityFile {own}"
        )
    )
    try:
        refused = ssh(own_config, "lab-dev@lab-input", "true")
        assert refused.returncode == 255 and "Permission denied" in refused.stderr
        # The configured key still logs in, and the deploy (root) still connects.
        assert _as_developer(ssh_config, "id -un").stdout.strip() == "lab-dev"
        assert lab.run_on(address_of(converged, "input"), "true").returncode == 0
    finally:
        _as_developer(ssh_config, "rm -f ~/.ssh/authorized_keys")


def test_a_link_in_a_developer_s_home_never_reaches_root_s_files(converged, ssh_config):
    address = address_of(converged, "input")
    shadow = "stat -c '%U:%G %a' /etc/shadow"
    before = lab.run_on(address, shadow)
    assert before.returncode == 0 and before.stdout.startswith("root:"), before.stderr
    planted = _as_developer(
        ssh_config,
        "mkdir -p -m 700 ~/.ssh && rm -f ~/.ssh/authorized_keys"
        " && ln -s /etc/shadow ~/.ssh/authorized_keys",
    )
    assert planted.returncode == 0, planted.stderr
    try:
        deployed = pyinfra("-y", "deploys/bastion.py")  # root's deploy, with the link in place
        assert deployed.returncode == 0, deployed.stderr[-3000:]
        assert lab.run_on(address, shadow).stdout == before.stdout  # owner and mode unchanged
        # kubi left the home alone: the link is still the developer's own.
        assert lab.run_on(address, "test -L /home/lab-dev/.ssh/authorized_keys").returncode == 0
        assert _as_developer(ssh_config, "id -un").stdout.strip() == "lab-dev"
    finally:
        _as_developer(ssh_config, "rm -f ~/.ssh/authorized_keys")


# --- the firewall: what people and hosts may reach --------------------------------------------

# curl's exit codes: 7 the connection was refused (the firewall's TCP reset).
REFUSED = 7
# An SSH server keeps a raw connection open, waiting for the client: 28, out of time.
PROBE = "curl -s -o /dev/null --max-time 3 {url} </dev/null; echo $?"


def _probe(run, urls: dict[str, str]) -> dict[str, int]:
    """Each URL's curl exit code, tried in one SSH session through `run`."""
    script = "; ".join(PROBE.format(url=shlex.quote(url)) for url in urls.values())
    result = run(script)
    assert result.returncode == 0, result.stderr
    return dict(zip(urls, map(int, result.stdout.split()), strict=True))


def _other_hosts(converged) -> dict[str, str]:
    """A listening service of each other host, as a URL (curl speaks raw TCP as telnet://)."""
    return {
        "output nginx": f"http://{address_of(converged, 'output')}/",
        "package proxy": f"http://{address_of(converged, 'repository')}:3142/",
        "registry": f"https://{address_of(converged, 'repository')}/",
        "control plane ssh": f"telnet://{address_of(converged, 'control_plane')}:22",
        "worker ssh": f"telnet://{address_of(converged, 'workers')}:22",
    }


def test_a_developer_reaches_the_cockpit_and_nothing_else(converged, ssh_config):
    codes = _probe(
        lambda script: _as_developer(ssh_config, script),
        {
            "cockpit": "http://127.0.0.1:8080/",
            "input ssh on loopback": "telnet://127.0.0.1:22",
            **_other_hosts(converged),
        },
    )
    assert codes.pop("cockpit") == 0
    assert codes == dict.fromkeys(codes, REFUSED)
    # The API stream is open to them: nginx takes the connection (and, with the cluster, an
    # API server answers it), which the firewall would have refused.
    stream = _as_developer(
        ssh_config, "curl -sk -o /dev/null --max-time 5 https://127.0.0.1:6443/; echo $?"
    )
    assert int(stream.stdout.split()[-1]) != REFUSED


def test_an_operator_still_reaches_the_other_hosts(converged, ssh_config):
    codes = _probe(lambda script: ssh(ssh_config, "lab-ops@lab-input", script),
                   _other_hosts(converged))  # fmt: skip
    assert REFUSED not in codes.values(), codes


def test_a_developer_cannot_tunnel_out_of_the_input_host(converged, ssh_config, tmp_path):
    cp1 = address_of(converged, "control_plane")
    # ProxyCommand through the developer's shell (bash's /dev/tcp, both directions): the
    # firewall refuses the connection.
    relay = "'exec 3<>/dev/tcp/%h/%p; cat <&3 & exec cat >&3'"
    proxy = f'ssh -F {ssh_config} lab-dev@lab-input exec bash -c "{relay}"'
    refused = ssh(ssh_config, "-o", f"ProxyCommand={proxy}", "lab-ops@lab-cp1", "true")
    assert refused.returncode == 255, refused.stderr
    # The same through the operator's shell reaches the host: the path itself works.
    allowed = ssh(ssh_config, "-o", f"ProxyCommand={proxy.replace('lab-dev', 'lab-ops')}",
                  "lab-ops@lab-cp1", "hostname")  # fmt: skip
    assert allowed.stdout.strip() == "lab-cp1", allowed.stderr
    # -W and -L to another host: sshd refuses to open the channel.
    for target in (f"{cp1}:22", f"{address_of(converged, 'output')}:80"):
        channel = ssh(ssh_config, "-W", target, "lab-dev@lab-input")
        assert channel.returncode == 255 and "stdio forwarding failed" in channel.stderr
    forward = subprocess.Popen(
        ["ssh", "-F", str(ssh_config), "-N", "-o", "ExitOnForwardFailure=yes",
         "-L", f"127.0.0.1:18422:{cp1}:22", "lab-dev@lab-input"],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        subprocess.run(["sleep", "2"], check=True)
        banner = subprocess.run(
            ["curl", "-s", "--max-time", "5", "telnet://127.0.0.1:18422"],
            capture_output=True, text=True, stdin=subprocess.DEVNULL,
        )  # fmt: skip
        assert "SSH-2.0" not in banner.stdout
    finally:
        forward.terminate()
        forward.wait(timeout=10)


def test_hosts_take_each_port_only_from_the_hosts_that_need_it(converged):
    # A root shell of the repository host is not the input host: no SSH to the nodes.
    from_repository = _probe(
        lambda script: lab.run_on(address_of(converged, "repository"), script),
        {
            "worker ssh": f"telnet://{address_of(converged, 'workers')}:22",
            "input ssh": f"telnet://{address_of(converged, 'input')}:22",
            "output nginx": f"http://{address_of(converged, 'output')}/",
        },
    )
    refused = {name: code == REFUSED for name, code in from_repository.items()}
    assert refused == {"worker ssh": True, "input ssh": False, "output nginx": False}
    from_input = _probe(
        lambda script: lab.run_on(address_of(converged, "input"), script),
        {"worker ssh": f"telnet://{address_of(converged, 'workers')}:22"},
    )
    assert from_input["worker ssh"] != REFUSED


def test_the_firewall_never_locks_the_deploy_out_and_repairs_itself(converged, tmp_path):
    worker = address_of(converged, "workers")
    listed = "nft list table inet kubi | sed -n 's/.*comment \"\\(.*\\)\"$/\\1/p' | head -1"
    before = lab.run_on(worker, listed).stdout
    # A config that would refuse the machine's next SSH connection is refused, unchanged.
    inventory = tmp_path / "lab_locked_out.py"
    inventory.write_text(
        textwrap.dedent("""\
        from kubi import lab
        from kubi.inventory import declare

        description = lab.platform_description(lab.load_state())
        description["firewall"] = {"admin_networks": ["10.99.0.0/24"]}
        globals().update(declare(__file__, **description).pyinfra_groups())
    """)
    )
    refused = pyinfra("-y", "deploys/firewall.py", "--limit", "lab-worker1",
                      inventory=str(inventory))  # fmt: skip
    assert refused.returncode != 0
    assert "this deploy connects from 10.77.0.1, which firewall.admin_networks" in (
        refused.stdout + refused.stderr
    )
    assert lab.run_on(worker, listed).stdout == before
    # A table removed by hand is loaded again by the next run.
    assert lab.run_on(worker, "nft delete table inet kubi").returncode == 0
    repaired = pyinfra("--json", "-y", "deploys/firewall.py", "--limit", "lab-worker1")
    assert repaired.returncode == 0, repaired.stderr[-3000:]
    assert "firewall rules loaded (the table was missing or changed by hand)" in changed_ops(
        repaired
    )
    assert lab.run_on(worker, listed).stdout == before
