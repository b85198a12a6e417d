"""Tests that need more than an ordinary user has, skipped (one line each) for anyone else.

The fast gate (`scripts/test --fast`) runs as any user; CI runs everything as root. A test
listed here that no longer exists stops the run, so the lists stay true.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# These run kubi.ops.file for real with its default owner root:root, as deploys do on hosts.
NEEDS_ROOT = {
    "tests/unit/test_nginx_mechanism.py": [
        "test_site_is_added_served_and_idempotent",
        "test_invalid_change_is_refused_and_nginx_keeps_serving",
        "test_invalid_new_site_is_removed_again",
        "test_site_removal_and_permission_drift",
        "test_refused_first_nginx_conf_is_removed_and_a_packaged_one_kept",
    ],
    "tests/unit/test_graylog.py": ["test_sites_route_by_name_and_restrict_graylog"],
    # a network namespace of its own for nft (unshare --net)
    "tests/unit/test_firewall.py": ["test_every_hosts_rules_pass_the_real_nft_parser"],
    # chroot into the kube-proxy image, and iptables in a network namespace of its own
    "tests/unit/test_lab_images.py": ["test_kube_proxy_image_runs_iptables"],
}
# These publish through the machine-wide lock kubi.charts.LOCK (/run/lock/kubi-charts.lock).
NEEDS_CHARTS_LOCK = {
    "tests/unit/test_charts.py": [
        "test_publish_packages_and_indexes",
        "test_index_merge_keeps_existing_entries",
        "test_same_version_other_content_is_refused_unless_forced",
        "test_same_content_again_changes_nothing",
        "test_packaged_chart_is_published_as_it_is",
        "test_concurrent_index_change_is_merged_again",
        "test_cli_refuses_a_broken_chart_with_helms_message",
        "test_archive_named_like_an_option_is_stored_as_a_file",
    ],
    "tests/unit/test_ssh.py": ["test_charts_publish_through_ssh"],
}
ROOT = Path(__file__).resolve().parents[1]


def _charts_lock_writable() -> bool:
    from kubi.charts import LOCK

    lock = Path(LOCK)
    return os.access(lock if lock.exists() else lock.parent, os.W_OK)


def _skips(modules: set[str]) -> dict[str, pytest.MarkDecorator]:
    """'<module>::<test>' -> its skip mark, for this user."""
    if os.geteuid() == 0:
        return {}
    wanted = [(NEEDS_ROOT, "needs root (installs root-owned files); CI runs it")]
    if modules & set(NEEDS_CHARTS_LOCK) and not _charts_lock_writable():
        reason = "/run/lock/kubi-charts.lock is not writable by this user (a root run made it)"
        wanted.append((NEEDS_CHARTS_LOCK, f"{reason}; CI runs it"))
    return {
        f"{module}::{test}": pytest.mark.skip(reason=reason)
        for listing, reason in wanted
        for module, tests in listing.items()
        for test in tests
    }


def pytest_collection_modifyitems(config, items):
    modules = {_relative(item): getattr(item, "module", None) for item in items}
    for listing in (NEEDS_ROOT, NEEDS_CHARTS_LOCK):
        for module, tests in listing.items():
            gone = [t for t in tests if module in modules and not hasattr(modules[module], t)]
            if gone:
                raise pytest.UsageError(f"tests/conftest.py lists, in {module}, gone tests {gone}")
    skips = _skips(set(modules))
    for item in items:
        mark = skips.get(f"{_relative(item)}::{getattr(item, 'originalname', item.name)}")
        if mark is not None:
            item.add_marker(mark)


def _relative(item: pytest.Item) -> str:
    path = item.path
    return path.relative_to(ROOT).as_posix() if path.is_relative_to(ROOT) else str(path)


_deselected_lab: list[pytest.Item] = []


def pytest_deselected(items):
    _deselected_lab.extend(item for item in items if item.get_closest_marker("lab"))


def pytest_terminal_summary(terminalreporter):
    if _deselected_lab:
        terminalreporter.write_line(
            f"{len(_deselected_lab)} lab tests left out (marker `lab`); they build a lab of "
            "real hosts (root): pytest -m lab tests/lab, or scripts/test"
        )


# Real Kubernetes binaries, built outside the checkout (docs/kubernetes-lab.md, section 1, in
# the shared docs); the tests that need one skip with this reason when it is absent.
KUBERNETES_BIN = Path(os.environ.get("KUBI_LAB_KUBERNETES_BIN", "/var/cache/kubi-kubernetes-bin"))
KUBEADM = KUBERNETES_BIN / "kubeadm"
NO_KUBEADM = (
    f"no kubeadm binary in {KUBERNETES_BIN} (KUBI_LAB_KUBERNETES_BIN): build the v1.33.3 "
    "binaries outside the checkout as shared/docs/kubernetes-lab.md, section 1, says"
)
needs_kubeadm = pytest.mark.skipif(not os.access(KUBEADM, os.X_OK), reason=NO_KUBEADM)


@pytest.fixture(scope="session")
def apiserver():
    """A real kube-apiserver and etcd on 127.0.0.1 (tests/apiserver.py), one per session
    (per xdist worker), for the unit and plan tiers.

    Skipped, like the kubeadm tests, also in CI, when the Kubernetes binaries are not built
    on this machine."""
    from tests import apiserver as real_apiserver  # it reads KUBERNETES_BIN from here

    if not real_apiserver.available():
        pytest.skip(real_apiserver.NO_APISERVER)
    with real_apiserver.running() as server:
        yield server


@pytest.fixture
def direct(apiserver, monkeypatch):
    """kubi's way into the API (kubeapi.connected), answered by the `apiserver` fixture's
    direct client instead of a tunnel through an input host (the lab runs the tunnel).
    Returns a client of the same server, for the test's own checks."""
    from contextlib import contextmanager

    from kubi import apply

    @contextmanager
    def connected(declared):
        yield apply.dynamic_client(apiserver.api_client())

    monkeypatch.setattr("kubi.kubeapi.connected", connected)
    return apply.dynamic_client(apiserver.api_client())
