"""The Kubernetes API as kubi reaches it from the deployer: through an SSH tunnel to the
input host's local API stream (the cockpit's `api_port` on its 127.0.0.1), never through
an exposed API, with a short-lived admin certificate signed by the deployer's cluster CA.

    with kubeapi.connected(declared) as api:      # a kubernetes DynamicClient
        kubi.apply.apply(api, objects, component="dashboard", platform=declared.config.name)

The certificate names user `kubi` in kubeadm's `kubeadm:cluster-admins` group (bound to
cluster-admin by kubeadm init since 1.29), not `system:masters`, which no RBAC can take
back. It lives one hour, its key is made for this connection alone, and both exist on
disk only while connected, 0600 in a 0700 folder that is removed afterwards. The API
server's certificate is checked against the cluster CA: it names 127.0.0.1.
"""

from __future__ import annotations

import datetime as dt
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from kubi.cluster_pki import ClusterCa, cluster_pki
from kubi.pki import key_usage
from kubi.secrets import for_platform

USER = "kubi"
GROUP = "kubeadm:cluster-admins"
LIFETIME = dt.timedelta(hours=1)
API_WAIT = 180.0  # seconds for a new cluster's API to answer through the input host


def admin_certificate(ca: ClusterCa, now: dt.datetime | None = None) -> tuple[bytes, bytes]:
    """(certificate PEM, key PEM) of kubi's admin, signed by the cluster CA, valid an hour
    (from five minutes before `now`, for clocks a little apart)."""
    now = now or dt.datetime.now(dt.UTC)
    key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = x509.load_pem_x509_certificate(ca.cert.encode())
    ca_key = serialization.load_pem_private_key(ca.key.encode(), password=None)
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, GROUP),
            x509.NameAttribute(NameOID.COMMON_NAME, USER),
        ]
    )
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + LIFETIME)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(key_usage(digital_signature=True), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())  # type: ignore[arg-type]
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


@contextmanager
def credentials(ca: ClusterCa) -> Iterator[Path]:
    """A 0700 folder holding ca.crt, admin.crt and admin.key (0600) while in use."""
    cert, key = admin_certificate(ca)
    with tempfile.TemporaryDirectory(prefix="kubi-api-") as folder:  # made 0700
        path = Path(folder)
        for name, data in (("ca.crt", ca.cert.encode()), ("admin.crt", cert), ("admin.key", key)):
            target = path / name
            target.touch(mode=0o600)
            target.write_bytes(data)
        yield path


@contextmanager
def connected(declared, connect: Callable[[str, dict], Any] | None = None) -> Iterator[Any]:
    """A DynamicClient of the platform's API, through the first input host's API stream."""
    from kubernetes import client

    from kubi import apply
    from kubi.ssh import SshHost

    platform = declared.config
    entry = platform.role("input")[0]
    pki = cluster_pki(for_platform(platform))
    with (
        (connect or SshHost)(entry.name, declared.host_data(entry.name)) as ssh,
        ssh.forward("127.0.0.1", platform.cockpit.api_port) as port,
        credentials(pki.ca) as folder,
    ):
        config = client.Configuration(host=f"https://127.0.0.1:{port}")
        config.ssl_ca_cert = str(folder / "ca.crt")
        config.cert_file = str(folder / "admin.crt")
        config.key_file = str(folder / "admin.key")
        with client.ApiClient(config) as api_client:
            _bounded(api_client)
            yield apply.dynamic_client(api_client)


@contextmanager
def answering(declared, wait: float = API_WAIT, pause: float = 3.0) -> Iterator[Any]:
    """`connected`, once the API answers: within the run that made the cluster, it may not
    answer yet (a control plane joining restarts the API servers), so kubi tries again for
    up to `wait` seconds before the error."""
    from kubi import apply

    deadline = time.monotonic() + wait
    while True:
        stack = ExitStack()
        try:
            api = stack.enter_context(connected(declared))
        except apply.ApiUnreachable as error:
            stack.close()
            if time.monotonic() > deadline:
                raise apply.ApiUnreachable(
                    f"{error} (for {wait:.0f} s): check the control planes (kubi check)"
                ) from None
            time.sleep(pause)
            continue
        break
    with stack:
        yield api


def _bounded(api_client: Any) -> None:
    """Every request of `api_client` without a timeout of its own (the dynamic client's
    discovery, a plain get) gets apply.REQUEST_TIMEOUT: a tunnel or a server that stops
    answering fails the run with an error instead of holding it forever."""
    from kubi import apply

    request = api_client.rest_client.request

    def bounded(*args: Any, _request_timeout: Any = None, **kwargs: Any) -> Any:
        timeout = apply.REQUEST_TIMEOUT if _request_timeout is None else _request_timeout
        return request(*args, _request_timeout=timeout, **kwargs)

    api_client.rest_client.request = bounded
