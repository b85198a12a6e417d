"""A platform deployed by an admin account with sudo, as production inventories allow.

`KUBI_LAB_DEPLOY_USER=kubi-admin` makes the lab deploy as that account (scripts/test runs
the whole lab tier once that way); as root these tests have nothing to prove and skip.
"""

from __future__ import annotations

import hashlib
import subprocess

import pytest

from kubi import lab

from .conftest import changed_ops, pyinfra

pytestmark = pytest.mark.lab

TLS = "/etc/nginx/tls/repository.pem"  # the repository's certificate and private key


@pytest.fixture(scope="module")
def deploy_user(lab_state):
    if lab_state.deploy_user == "root":
        pytest.skip("the lab deploys as root; KUBI_LAB_DEPLOY_USER=kubi-admin runs this")
    converged = pyinfra("-y", "deploys/all.py")
    assert converged.returncode == 0, converged.stderr[-3000:]
    return lab_state.deploy_user


def test_the_deploy_works_through_its_account_and_root_cannot_log_in(lab_state, deploy_user):
    for host in lab_state.hosts:
        became = lab.run_on(host.address, "id -un; echo $SUDO_USER")
        assert became.stdout.split() == ["root", deploy_user], became.stderr
        lab.check_route(host.address)
        direct = subprocess.run(
            lab.ssh_argv(host.address, "true", user="root"),
            capture_output=True, stdin=subprocess.DEVNULL, timeout=30,
        )  # fmt: skip
        assert direct.returncode == 255, host.name  # the seed's PermitRootLogin no


def test_a_staging_file_prepared_by_another_account_never_gets_a_secret(lab_state, deploy_user):
    """pyinfra's own staging name for an upload through sudo is /tmp/pyinfra-<sha1 of the
    destination>: an account that creates it first (writable by all) would read the key
    written into it, or change it before the copy. kubi stages elsewhere."""
    repository = next(h for h in lab_state.hosts if h.role == "repository").address
    staged = "/tmp/pyinfra-" + hashlib.sha1(f"{TLS}.kubi-new".encode()).hexdigest()
    prepared = lab.run_on(
        repository,
        "id mallory >/dev/null 2>&1 || useradd --create-home mallory; "
        f"su mallory -s /bin/sh -c 'umask 0; : > {staged}' && rm -f {TLS}",
    )
    assert prepared.returncode == 0, prepared.stderr
    try:
        result = pyinfra("--json", "-y", "deploys/registry.py", "--limit", "lab-repository")
        assert result.returncode == 0, result.stderr[-3000:]
        assert "repository TLS certificate and key" in changed_ops(result)
        seen = lab.run_on(
            repository,
            f"stat -c '%U %s' {staged}; stat -c '%U:%G %a' {TLS}; "
            "stat -c '%U %a' /run/kubi-upload; ls -A /run/kubi-upload | wc -l; "
            "ls /tmp | grep -c '^pyinfra-' || true",
        )
        assert seen.stdout.split("\n")[:5] == [
            "mallory 0",  # still empty: the key never went there
            "root:root 600",
            f"{deploy_user} 700",
            "0",  # every staged upload removed
            "1",  # the prepared file is the only pyinfra-* name in /tmp
        ], seen.stdout
    finally:
        lab.run_on(repository, f"rm -f {staged}; userdel --remove mallory 2>/dev/null; true")
