"""kubi's way into the cluster's API (kubi/kubeapi.py): the admin certificate the deployer
signs, and the folder that holds it only while connected. The tunnel itself runs on the
lab (tests/lab/test_cluster.py)."""

from __future__ import annotations

import datetime as dt
import stat

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from kubi import kubeapi
from kubi.cluster_pki import cluster_pki
from kubi.secrets import Secrets


@pytest.fixture(scope="module")
def ca(tmp_path_factory):
    return cluster_pki(Secrets(tmp_path_factory.mktemp("pki") / "secrets")).ca


def test_the_admin_certificate_is_kubis_short_lived_and_signed_by_the_cluster_ca(ca):
    now = dt.datetime(2026, 11, 27, 12, 0, tzinfo=dt.UTC)
    cert_pem, key_pem = kubeapi.admin_certificate(ca, now)
    cert = x509.load_pem_x509_certificate(cert_pem)
    subject = {a.oid: a.value for a in cert.subject}
    assert subject == {
        NameOID.COMMON_NAME: "kubi",
        NameOID.ORGANIZATION_NAME: "kubeadm:cluster-admins",
    }
    assert cert.not_valid_after_utc - now == dt.timedelta(hours=1)
    assert now - cert.not_valid_before_utc == dt.timedelta(minutes=5)
    usage = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(usage) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
    issuer = x509.load_pem_x509_certificate(ca.cert.encode())
    assert cert.issuer == issuer.subject
    issuer.public_key().verify(  # type: ignore[call-arg]
        cert.signature,
        cert.tbs_certificate_bytes,
        padding.PKCS1v15(),
        cert.signature_hash_algorithm,
    )
    assert b"PRIVATE KEY" in key_pem and kubeapi.admin_certificate(ca, now)[1] != key_pem


def test_the_credentials_exist_only_while_connected_and_only_for_their_owner(ca):
    with kubeapi.credentials(ca) as folder:
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700
        files = {p.name: stat.S_IMODE(p.stat().st_mode) for p in folder.iterdir()}
        assert files == {"ca.crt": 0o600, "admin.crt": 0o600, "admin.key": 0o600}
        assert (folder / "ca.crt").read_text() == ca.cert
    assert not folder.exists()


def test_a_server_that_stops_answering_fails_the_request_instead_of_holding_the_run(
    monkeypatch,
):
    """A tunnel or an API server that accepts and never answers: every request kubi makes
    (here a plain one, with no timeout of its own) ends with an error in bounded time."""
    import socket
    import time

    import urllib3
    from kubernetes import client

    monkeypatch.setattr("kubi.apply.REQUEST_TIMEOUT", 1.0)
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)  # accepted by the kernel, never read nor answered
    try:
        config = client.Configuration(host=f"http://127.0.0.1:{silent.getsockname()[1]}")
        config.retries = False
        with client.ApiClient(config) as api_client:
            kubeapi._bounded(api_client)
            start = time.monotonic()
            with pytest.raises(urllib3.exceptions.ReadTimeoutError):
                client.CoreV1Api(api_client).list_namespace()
            assert time.monotonic() - start < 10
    finally:
        silent.close()


def test_answering_waits_for_a_new_clusters_api_then_gives_up_in_bounded_time(monkeypatch):
    from contextlib import contextmanager

    from kubi import apply

    tries = []

    @contextmanager
    def flaky(declared):
        tries.append(1)
        if len(tries) < 3:  # the API servers restart while a control plane joins
            raise apply.ApiUnreachable("discovery at https://127.0.0.1:1: could not be reached")
        yield "api"

    monkeypatch.setattr(kubeapi, "connected", flaky)
    with kubeapi.answering(None, wait=5, pause=0.01) as api:
        assert api == "api"
    assert len(tries) == 3

    @contextmanager
    def never(declared):
        raise apply.ApiUnreachable("discovery at https://127.0.0.1:1: could not be reached")
        yield

    monkeypatch.setattr(kubeapi, "connected", never)
    refused = pytest.raises(apply.ApiUnreachable, match=r"\(for 0 s\): check the control")
    with refused, kubeapi.answering(None, wait=0.2, pause=0.01):
        pass
