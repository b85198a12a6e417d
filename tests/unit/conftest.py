"""Fixtures shared by the unit tier."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests import apiserver as real_apiserver


@pytest.fixture(scope="session")
def apiserver() -> Iterator[real_apiserver.ApiServer]:
    """A real kube-apiserver and etcd on 127.0.0.1, one per session (per xdist worker).

    Skipped, like the kubeadm tests (tests/conftest.py: needs_kubeadm), also in CI, when the
    Kubernetes binaries are not built on this machine."""
    if not real_apiserver.available():
        pytest.skip(real_apiserver.NO_APISERVER)
    with real_apiserver.running() as server:
        yield server
