"""The Kubernetes cluster's PKI, generated once by the deployer and kept with the platform's
secrets, so that one run knows every kubeadm command before any host has run one.

kubeadm makes its CAs on the first control plane during `kubeadm init`; the joins of the
other nodes then depend on values only that host knows (the CA's hash, a token, the key
that encrypts the uploaded certificates). kubi makes them beforehand instead: kubeadm
reuses CA files it finds in its certificate folder, and takes the token and the certificate
key from its configuration. What is kept (`kubi.secrets.Secrets`, one file each, 0600):

- the cluster CA (CN `kubernetes`), the front-proxy CA and the etcd CA: RSA 2048, kubeadm's
  own default key type (`EncryptionAlgorithm` RSA-2048), so the certificates kubeadm signs
  with them are what it would make itself; 10 years;
- the service-account signing key pair (`sa.key`, `sa.pub`);
- a bootstrap token for the joins and the certificate key of `kubeadm init --upload-certs`.

The discovery hash of `kubeadm join --discovery-token-ca-cert-hash` is computed from the CA.

A running cluster trusts these exact CAs and keys: kubi never replaces one. A CA whose
certificate and key do not belong together, or that expires within a year, stops the run
with one line saying which file and what to do.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import secrets as _random
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes, PublicKeyTypes
from cryptography.x509.oid import NameOID

from kubi.pki import self_signed_ca
from kubi.secrets import Secrets

CA_DAYS = 3650
RSA_BITS = 2048
# A CA closer than this to its end stops the run: renewing a cluster CA is planned work.
CA_MIN_REMAINING = dt.timedelta(days=365)

TOKEN_FORM = re.compile(r"[a-z0-9]{6}\.[a-z0-9]{16}")
CERTIFICATE_KEY_FORM = re.compile(r"[0-9a-f]{64}")
_TOKEN_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789"


class ClusterPkiError(Exception):
    """A stored piece of the cluster PKI that kubi must not use nor replace; the message is
    one line naming the file and what to do."""


@dataclass(frozen=True)
class ClusterCa:
    """One CA: `name` is its base name in kubeadm's certificate folder (`etcd/ca`)."""

    name: str
    cert: str = field(repr=False)
    key: str = field(repr=False)


@dataclass(frozen=True)
class ClusterPki:
    """Everything kubeadm needs from the deployer; no key or token shows in its repr."""

    ca: ClusterCa
    front_proxy_ca: ClusterCa
    etcd_ca: ClusterCa
    sa_key: str = field(repr=False)
    sa_pub: str = field(repr=False)
    bootstrap_token: str = field(repr=False)
    certificate_key: str = field(repr=False)
    discovery_hash: str  # of the CA's public key: public, and what a join checks

    @property
    def token_id(self) -> str:
        """The bootstrap token's public half (`<id>.<secret>`), which names it."""
        return self.bootstrap_token.split(".", 1)[0]

    def pki_files(self) -> dict[str, str]:
        """kubeadm's certificate folder (/etc/kubernetes/pki) as relative path -> content."""
        files = {}
        for ca in (self.ca, self.front_proxy_ca, self.etcd_ca):
            files[f"{ca.name}.crt"] = ca.cert
            files[f"{ca.name}.key"] = ca.key
        files["sa.key"] = self.sa_key
        files["sa.pub"] = self.sa_pub
        return files


# (kubeadm's base name, common name, secret name)
CAS = (
    ("ca", "kubernetes", "kubernetes-ca"),
    ("front-proxy-ca", "front-proxy-ca", "kubernetes-front-proxy-ca"),
    ("etcd/ca", "etcd-ca", "kubernetes-etcd-ca"),
)
SA_KEY, SA_PUB = "kubernetes-sa.key", "kubernetes-sa.pub"
BOOTSTRAP_TOKEN = "kubernetes-bootstrap-token"
CERTIFICATE_KEY = "kubernetes-certificate-key"


def cluster_pki(secrets: Secrets, now: dt.datetime | None = None) -> ClusterPki:
    """The cluster PKI of a platform: what is missing is generated and stored, what exists
    is read back and checked (a second call writes nothing and returns the same values).

    + secrets: the platform's secrets (`kubi.secrets.for_platform(platform)`)
    + now: the time the CAs are checked against (default: now)

        pki = cluster_pki(for_platform(platform))
        f"kubeadm join ... --discovery-token-ca-cert-hash {pki.discovery_hash}"
    """
    now = now or dt.datetime.now(dt.UTC)
    cas = [_ca(secrets, secret, base, cn, now) for base, cn, secret in CAS]
    sa_key, sa_pub = _service_account_keys(secrets)
    return ClusterPki(
        ca=cas[0],
        front_proxy_ca=cas[1],
        etcd_ca=cas[2],
        sa_key=sa_key,
        sa_pub=sa_pub,
        bootstrap_token=_stored(secrets, BOOTSTRAP_TOKEN, new_bootstrap_token, TOKEN_FORM),
        certificate_key=_stored(
            secrets, CERTIFICATE_KEY, new_certificate_key, CERTIFICATE_KEY_FORM
        ),
        discovery_hash=discovery_hash(cas[0].cert),
    )


def new_bootstrap_token() -> str:
    """`[a-z0-9]{6}.[a-z0-9]{16}`, the form kubeadm requires, from the system's CSPRNG."""

    def part(length: int) -> str:
        return "".join(_random.choice(_TOKEN_ALPHABET) for _ in range(length))

    return f"{part(6)}.{part(16)}"


def new_certificate_key() -> str:
    """32 random bytes as 64 hex digits (AES-256), as `kubeadm certs certificate-key` prints."""
    return _random.token_hex(32)


def discovery_hash(ca_cert_pem: str) -> str:
    """`sha256:<hex>` of the CA's SubjectPublicKeyInfo (DER): `--discovery-token-ca-cert-hash`."""
    cert = x509.load_pem_x509_certificate(ca_cert_pem.encode())
    spki = cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return "sha256:" + hashlib.sha256(spki).hexdigest()


def _key_pem(key: rsa.RSAPrivateKey) -> str:
    """PKCS#1 ("RSA PRIVATE KEY"), as kubeadm writes its own keys."""
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    ).decode()


def _public_pem(key: PublicKeyTypes) -> str:
    return key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()


def _new_ca(common_name: str, now: dt.datetime) -> tuple[str, str]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=RSA_BITS)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    cert = self_signed_ca(key, name, now, CA_DAYS, path_length=None, digital_signature=True)
    return cert.public_bytes(serialization.Encoding.PEM).decode(), _key_pem(key)


def _ca(secrets: Secrets, secret: str, base: str, common_name: str, now: dt.datetime) -> ClusterCa:
    cert_name, key_name = f"{secret}.crt", f"{secret}.key"
    has_cert, has_key = secrets.exists(cert_name), secrets.exists(key_name)
    if not has_cert and not has_key:
        cert_pem, key_pem = _new_ca(common_name, now)
        secrets.write(key_name, key_pem)  # the key first: a certificate without it is useless
        secrets.write(cert_name, cert_pem)
    elif not has_key or not has_cert:
        there, missing = (cert_name, key_name) if has_cert else (key_name, cert_name)
        raise ClusterPkiError(
            f"kubi: {secrets.path(there)} has no {missing} beside it: put back the file the "
            "cluster uses (kubi never replaces a cluster CA), or remove both to make a new CA "
            "for a cluster that does not exist yet"
        )
    cert_pem, key_pem = secrets.read(cert_name), secrets.read(key_name)
    _check_ca(secrets, cert_name, key_name, cert_pem, key_pem, now)
    return ClusterCa(name=base, cert=cert_pem, key=key_pem)


def _check_ca(
    secrets: Secrets, cert_name: str, key_name: str, cert_pem: str, key_pem: str, now: dt.datetime
) -> None:
    cert_path, key_path = secrets.path(cert_name), secrets.path(key_name)
    try:
        cert = x509.load_pem_x509_certificate(cert_pem.encode())
    except ValueError:
        raise ClusterPkiError(
            f"kubi: {cert_path} is not a PEM certificate: put back the cluster's CA certificate"
        ) from None
    key = _load_key(key_path, key_pem)
    if _public_pem(cert.public_key()) != _public_pem(key.public_key()):
        raise ClusterPkiError(
            f"kubi: {cert_path} and {key_path} do not belong together (the certificate is not "
            "of this key): put back the pair the cluster uses; kubi never replaces a cluster CA"
        )
    try:
        is_ca = cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except x509.ExtensionNotFound:
        is_ca = False
    if not is_ca:
        raise ClusterPkiError(
            f"kubi: {cert_path} is not a CA certificate (basicConstraints CA:TRUE): put back "
            "the cluster's CA"
        )
    expires = cert.not_valid_after_utc
    if expires - now < CA_MIN_REMAINING:
        raise ClusterPkiError(
            f"kubi: {cert_path} expires on {expires.date().isoformat()}, within a year: rotate "
            "the cluster's CA by hand (Kubernetes' manual CA rotation), then store the new "
            "pair here; kubi never replaces a cluster CA"
        )


def _load_key(path: Path, pem: str) -> PrivateKeyTypes:
    try:
        return serialization.load_pem_private_key(pem.encode(), password=None)
    except (ValueError, TypeError):
        raise ClusterPkiError(
            f"kubi: {path} is not an unencrypted PEM private key: put back the key the cluster uses"
        ) from None


def _service_account_keys(secrets: Secrets) -> tuple[str, str]:
    """The key pair that signs service-account tokens: replacing it would void every token
    the cluster issued, so an existing key is kept, and a public key that is not its own
    stops the run. A missing public key is derived again from the private one."""
    if not secrets.exists(SA_KEY):
        if secrets.exists(SA_PUB):
            raise ClusterPkiError(
                f"kubi: {secrets.path(SA_PUB)} has no {SA_KEY} beside it: put back the "
                "service-account key the cluster uses, or remove the public key to make a new "
                "pair for a cluster that does not exist yet"
            )
        key = rsa.generate_private_key(public_exponent=65537, key_size=RSA_BITS)
        secrets.write(SA_KEY, _key_pem(key))
    key_pem = secrets.read(SA_KEY)
    public = _public_pem(_load_key(secrets.path(SA_KEY), key_pem).public_key())
    if not secrets.exists(SA_PUB):
        secrets.write(SA_PUB, public)
    elif secrets.read(SA_PUB) != public:
        raise ClusterPkiError(
            f"kubi: {secrets.path(SA_PUB)} is not the public key of {secrets.path(SA_KEY)}: "
            "put back the pair the cluster uses, or remove the public key to derive it again"
        )
    return key_pem, public


def _stored(secrets: Secrets, name: str, generate: Callable[[], str], form: re.Pattern[str]) -> str:
    """A generated value, stored on first use; one that is not of its form stops the run
    (a hand edit gone wrong: kubeadm would refuse it, or worse, take a part of it)."""
    value = secrets.get(name, generate)
    if not form.fullmatch(value):
        raise ClusterPkiError(
            f"kubi: {secrets.path(name)} is not of the form kubeadm takes: remove it, and the "
            "next run makes a new one"
        )
    return value
