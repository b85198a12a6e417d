"""The cluster PKI the deployer owns: made once, read back unchanged, checked, never shown;
and accepted by kubeadm itself as its own CAs when a kubeadm binary is at hand."""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import shutil
import stat
import subprocess
from pathlib import Path

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from kubi.cluster_pki import ClusterPkiError, cluster_pki, discovery_hash
from kubi.config import matrices
from kubi.secrets import Secrets

from ..conftest import KUBEADM, needs_kubeadm

# Built in parts: no committed file carries a private key header.
RSA_KEY_HEADER = "-----BEGIN RSA " + "PRIVATE KEY-----\n"
STORED = {
    "kubernetes-ca.crt", "kubernetes-ca.key",
    "kubernetes-front-proxy-ca.crt", "kubernetes-front-proxy-ca.key",
    "kubernetes-etcd-ca.crt", "kubernetes-etcd-ca.key",
    "kubernetes-sa.key", "kubernetes-sa.pub",
    "kubernetes-bootstrap-token", "kubernetes-certificate-key",
}  # fmt: skip


@pytest.fixture(scope="module")
def made(tmp_path_factory) -> Path:
    """One platform's PKI, made once per module (RSA keys take a while to generate)."""
    folder = tmp_path_factory.mktemp("made") / "secrets"
    cluster_pki(Secrets(folder))
    return folder


@pytest.fixture
def store(made, tmp_path) -> Secrets:
    """A copy of the made PKI, modes and times kept, for a test to read or damage."""
    shutil.copytree(made, tmp_path / "secrets")
    return Secrets(tmp_path / "secrets")


@pytest.fixture(scope="module")
def other(tmp_path_factory) -> Secrets:
    """Another platform's PKI, only read."""
    store = Secrets(tmp_path_factory.mktemp("other") / "secrets")
    cluster_pki(store)  # made here: a test that needs it may run alone (or on its own worker)
    return store


def snapshot(store: Secrets) -> dict[str, tuple[bytes, int, int, int]]:
    """Every file's bytes, modification time, inode and mode."""
    return {
        p.name: (p.read_bytes(), p.stat().st_mtime_ns, p.stat().st_ino, p.stat().st_mode)
        for p in store.directory.iterdir()
    }


def cert(pem: str) -> x509.Certificate:
    return x509.load_pem_x509_certificate(pem.encode())


# --- made once, read back -----------------------------------------------------------------


def test_generated_once_then_read_back_without_writing(tmp_path):
    store = Secrets(tmp_path / "secrets")
    first = cluster_pki(store)
    files = snapshot(store)
    assert set(files) == STORED  # no temporary file left behind
    assert stat.S_IMODE(store.directory.stat().st_mode) == 0o700
    assert {name: stat.S_IMODE(f[3]) for name, f in files.items()} == dict.fromkeys(STORED, 0o600)
    second = cluster_pki(store)
    assert second == first
    assert snapshot(store) == files


def test_each_platform_gets_its_own(store, other):
    one, two = cluster_pki(store), cluster_pki(other)
    assert one.bootstrap_token != two.bootstrap_token
    assert one.certificate_key != two.certificate_key
    assert one.discovery_hash != two.discovery_hash
    assert one.sa_key != two.sa_key


def test_token_and_certificate_key_have_kubeadms_forms(store):
    pki = cluster_pki(store)
    assert re.fullmatch(r"[a-z0-9]{6}\.[a-z0-9]{16}", pki.bootstrap_token, re.ASCII)
    assert re.fullmatch(r"[0-9a-f]{64}", pki.certificate_key, re.ASCII)
    assert store.read("kubernetes-bootstrap-token") == pki.bootstrap_token
    assert store.read("kubernetes-certificate-key") == pki.certificate_key


def test_discovery_hash_is_the_sha256_of_the_cas_public_key(store, tmp_path):
    pki = cluster_pki(store)
    spki = (
        cert(pki.ca.cert)
        .public_key()
        .public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    assert pki.discovery_hash == "sha256:" + hashlib.sha256(spki).hexdigest()
    # The way kubeadm's documentation computes it, with openssl.
    (tmp_path / "ca.crt").write_text(pki.ca.cert)
    assert pki.discovery_hash == "sha256:" + openssl_hash(tmp_path / "ca.crt")
    assert discovery_hash(pki.front_proxy_ca.cert) != pki.discovery_hash


def openssl_hash(ca_crt: Path) -> str:
    public = subprocess.run(
        ["openssl", "x509", "-pubkey", "-noout", "-in", ca_crt],
        capture_output=True, check=True,
    ).stdout  # fmt: skip
    der = subprocess.run(
        ["openssl", "pkey", "-pubin", "-outform", "der"],
        input=public, capture_output=True, check=True,
    ).stdout  # fmt: skip
    return hashlib.sha256(der).hexdigest()


@pytest.mark.parametrize(
    ("attribute", "common_name", "base"),
    [
        ("ca", "kubernetes", "ca"),
        ("front_proxy_ca", "front-proxy-ca", "front-proxy-ca"),
        ("etcd_ca", "etcd-ca", "etcd/ca"),
    ],
)
def test_each_ca_is_what_kubeadm_would_make(store, attribute, common_name, base):
    ca = getattr(cluster_pki(store), attribute)
    certificate = cert(ca.cert)
    key = serialization.load_pem_private_key(ca.key.encode(), password=None)
    assert ca.name == base
    assert ca.key.startswith(RSA_KEY_HEADER)  # PKCS#1, as kubeadm writes keys
    assert isinstance(key, rsa.RSAPrivateKey) and key.key_size == 2048
    assert certificate.public_key() == key.public_key()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    assert certificate.subject == name and certificate.issuer == name
    certificate.verify_directly_issued_by(certificate)  # self-signed
    constraints = certificate.extensions.get_extension_for_class(x509.BasicConstraints)
    assert constraints.critical and constraints.value.ca
    usage = certificate.extensions.get_extension_for_class(x509.KeyUsage)
    assert usage.critical
    assert usage.value.key_cert_sign and usage.value.crl_sign and usage.value.digital_signature
    assert not usage.value.key_encipherment and not usage.value.content_commitment
    ski = certificate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    assert ski == x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    assert certificate.not_valid_before_utc <= dt.datetime.now(dt.UTC)
    lifetime = certificate.not_valid_after_utc - certificate.not_valid_before_utc
    assert lifetime == dt.timedelta(days=3650, minutes=5)  # 10 years from 5 minutes ago
    assert certificate.signature_hash_algorithm is not None
    assert certificate.signature_hash_algorithm.name == "sha256"


def test_service_account_keys_are_a_pair(store):
    pki = cluster_pki(store)
    key = serialization.load_pem_private_key(pki.sa_key.encode(), password=None)
    public = serialization.load_pem_public_key(pki.sa_pub.encode())
    assert isinstance(key, rsa.RSAPrivateKey) and key.key_size == 2048
    assert pki.sa_key.startswith(RSA_KEY_HEADER)
    assert pki.sa_pub.startswith("-----BEGIN PUBLIC KEY-----\n")
    assert public == key.public_key()


def test_kubeadms_certificate_folder_is_laid_out(store):
    pki = cluster_pki(store)
    files = pki.pki_files()
    assert files == {
        "ca.crt": pki.ca.cert, "ca.key": pki.ca.key,
        "front-proxy-ca.crt": pki.front_proxy_ca.cert,
        "front-proxy-ca.key": pki.front_proxy_ca.key,
        "etcd/ca.crt": pki.etcd_ca.cert, "etcd/ca.key": pki.etcd_ca.key,
        "sa.key": pki.sa_key, "sa.pub": pki.sa_pub,
    }  # fmt: skip
    assert files["ca.crt"] == store.read("kubernetes-ca.crt")
    assert files["etcd/ca.key"] == store.read("kubernetes-etcd-ca.key")


def test_repr_shows_no_key_token_or_certificate(store):
    pki = cluster_pki(store)
    shown = repr(pki) + str(pki) + repr(pki.ca)
    assert pki.discovery_hash in shown  # public, and what a join checks
    secrets = [pki.bootstrap_token, pki.certificate_key, pki.sa_key, pki.sa_pub]
    for ca in (pki.ca, pki.front_proxy_ca, pki.etcd_ca):
        secrets += [ca.key, ca.cert]
    for value in secrets:
        assert value not in shown
        body = value.splitlines()[1] if "\n" in value else value
        assert body not in shown
    assert "PRIVATE" not in shown and "BEGIN" not in shown


# --- what kubi refuses to use, and never replaces --------------------------------------------


def refused(store: Secrets, **kwargs) -> str:
    files = snapshot(store)
    with pytest.raises(ClusterPkiError) as error:
        cluster_pki(store, **kwargs)
    assert snapshot(store) == files  # nothing replaced, nothing added
    message = str(error.value)
    assert "\n" not in message
    return message


def test_a_ca_whose_certificate_is_not_of_its_key_is_refused(store, other):
    store.write("kubernetes-ca.crt", other.read("kubernetes-ca.crt"))
    message = refused(store)
    assert message.startswith(
        f"kubi: {store.path('kubernetes-ca.crt')} and {store.path('kubernetes-ca.key')} do not "
        "belong together"
    )
    assert "kubi never replaces a cluster CA" in message


def test_a_ca_expiring_within_a_year_is_refused(store):
    pki = cluster_pki(store)
    expires = cert(pki.ca.cert).not_valid_after_utc
    later = expires - dt.timedelta(days=364)
    message = refused(store, now=later)
    assert message.startswith(
        f"kubi: {store.path('kubernetes-ca.crt')} expires on {expires.date().isoformat()}, "
        "within a year: rotate the cluster's CA by hand"
    )
    assert cluster_pki(store, now=expires - dt.timedelta(days=366)) == pki


def test_a_certificate_that_is_no_ca_is_refused(store):
    pki = cluster_pki(store)
    key = serialization.load_pem_private_key(pki.etcd_ca.key.encode(), password=None)
    assert isinstance(key, rsa.RSAPrivateKey)
    now = dt.datetime.now(dt.UTC)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "etcd-ca")])
    leaf = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    store.write("kubernetes-etcd-ca.crt", leaf.public_bytes(serialization.Encoding.PEM).decode())
    message = refused(store)
    assert message.startswith(f"kubi: {store.path('kubernetes-etcd-ca.crt')} is not a CA")


@pytest.mark.parametrize("kept", ["kubernetes-front-proxy-ca.crt", "kubernetes-front-proxy-ca.key"])
def test_half_a_ca_is_refused_not_completed(store, kept):
    gone = kept.replace(".crt", ".KEEP").replace(".key", ".crt").replace(".KEEP", ".key")
    store.remove(gone)
    message = refused(store)
    assert message.startswith(f"kubi: {store.path(kept)} has no {gone} beside it")


@pytest.mark.parametrize("name", ["kubernetes-ca.crt", "kubernetes-ca.key"])
def test_a_ca_file_that_is_not_pem_is_refused(store, name):
    store.write(name, "not a PEM file\n")
    assert refused(store).startswith(f"kubi: {store.path(name)} is not ")


def test_a_service_account_public_key_of_another_key_is_refused(store, other):
    store.write("kubernetes-sa.pub", other.read("kubernetes-sa.pub"))
    message = refused(store)
    assert message.startswith(
        f"kubi: {store.path('kubernetes-sa.pub')} is not the public key of "
        f"{store.path('kubernetes-sa.key')}"
    )


def test_a_lost_service_account_public_key_is_derived_again(store):
    pki = cluster_pki(store)
    store.remove("kubernetes-sa.pub")
    assert cluster_pki(store) == pki


def test_a_service_account_public_key_alone_is_refused(store):
    store.remove("kubernetes-sa.key")
    assert refused(store).startswith(f"kubi: {store.path('kubernetes-sa.pub')} has no ")


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("kubernetes-bootstrap-token", "abcdef.0123456789abcdef\n"),
        ("kubernetes-bootstrap-token", "ABCDEF.0123456789abcdef"),
        ("kubernetes-bootstrap-token", "abcdef0123456789abcdef"),
        ("kubernetes-certificate-key", "0" * 63),
        ("kubernetes-certificate-key", "g" * 64),
    ],
)
def test_a_token_or_key_edited_out_of_form_is_refused(store, name, value):
    store.write(name, value)
    message = refused(store)
    assert message.startswith(f"kubi: {store.path(name)} is not of the form kubeadm takes")
    assert value.strip() not in message


# --- kubeadm itself takes these CAs (when a kubeadm binary has been built) -------------------


@needs_kubeadm
def test_kubeadm_reuses_the_cas_and_signs_with_them(store, tmp_path):
    pki = cluster_pki(store)
    cert_dir = tmp_path / "pki"
    for relative, content in pki.pki_files().items():
        path = cert_dir / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)
        path.chmod(0o600)
    given = {p.relative_to(cert_dir): p.read_bytes() for p in cert_dir.rglob("*") if p.is_file()}
    done = subprocess.run(
        [
            KUBEADM, "init", "phase", "certs", "all", "--cert-dir", cert_dir,
            "--kubernetes-version", "v1.33.3", "--control-plane-endpoint", "127.0.0.1",
            # A documentation address (RFC 5737): nothing is sent anywhere.
            "--apiserver-advertise-address", "192.0.2.10",
        ],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    for relative, content in given.items():  # reused as they are, not made again
        assert (cert_dir / relative).read_bytes() == content, relative
    for base in ("ca", "front-proxy-ca", "etcd/ca"):
        assert f"[certs] Using existing {base} certificate authority" in done.stdout
    assert '[certs] Using the existing "sa" key' in done.stdout
    # What kubeadm made is signed by kubi's CAs.
    signed_by = {
        "apiserver.crt": "ca.crt",
        "apiserver-kubelet-client.crt": "ca.crt",
        "front-proxy-client.crt": "front-proxy-ca.crt",
        "etcd/server.crt": "etcd/ca.crt",
        "etcd/peer.crt": "etcd/ca.crt",
        "apiserver-etcd-client.crt": "etcd/ca.crt",
    }
    for leaf, ca in signed_by.items():
        verified = subprocess.run(
            ["openssl", "verify", "-CAfile", cert_dir / ca, cert_dir / leaf],
            capture_output=True, text=True,
        )  # fmt: skip
        assert verified.returncode == 0, (leaf, verified.stdout + verified.stderr)
    # The hash a join checks, as openssl computes it from the CA kubeadm uses.
    assert pki.discovery_hash == "sha256:" + openssl_hash(cert_dir / "ca.crt")


@needs_kubeadm
def test_kubeadm_takes_the_token_certificate_key_and_hash_in_its_configuration(store, tmp_path):
    """The values of `kubeadm init --upload-certs` and of the joins, in the configuration
    API the version table names for the lab's release."""
    pki = cluster_pki(store)
    api = matrices.kubernetes_minor("1.33.3").kubeadm_api
    init = [
        {
            "apiVersion": api,
            "kind": "InitConfiguration",
            "bootstrapTokens": [{"token": pki.bootstrap_token}],
            "certificateKey": pki.certificate_key,
        },
        {
            "apiVersion": api,
            "kind": "ClusterConfiguration",
            "kubernetesVersion": "v1.33.3",
            "controlPlaneEndpoint": "127.0.0.1:6443",
        },
    ]
    join = {
        "apiVersion": api,
        "kind": "JoinConfiguration",
        "discovery": {
            "bootstrapToken": {
                "apiServerEndpoint": "127.0.0.1:6443",
                "token": pki.bootstrap_token,
                "caCertHashes": [pki.discovery_hash],
            }
        },
        "controlPlane": {"certificateKey": pki.certificate_key},
    }
    for name, documents in (("init", init), ("join", [join])):
        config = tmp_path / f"{name}.yaml"
        config.write_text(yaml.safe_dump_all(documents))
        checked = subprocess.run(
            [KUBEADM, "config", "validate", "--config", config],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert checked.returncode == 0, (name, checked.stdout + checked.stderr)
