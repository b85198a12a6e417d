"""The platform CA and the certificates it signs, kept in the platform's secrets.

The deployer owns the CA (generated once, ECDSA P-256, 10 years) so that every host and
client can trust platform services without a public CA. Its key never leaves the
deployer's secrets folder (0700, file 0600): no host receives it, only the certificate.

Every host trusts the CA, so it is name-constrained (critical, RFC 5280): it can vouch
only for the platform's domain and the names below it, and for no IP address at all. A
key stolen from the deployer could then not impersonate any other site to the hosts. A
CA made before the constraints, or for another domain, is replaced on the next run (every
host then trusts the new one, and certificates are reissued from it).

Server certificates are reissued when their names change, when the CA changes, or when
they come within 30 days of expiry.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from collections.abc import Sequence

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from pyinfra import logger

from kubi.secrets import Secrets

CA_DAYS = 3650
SERVER_DAYS = 825
RENEW_BEFORE = dt.timedelta(days=30)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


def _cert_pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def name_constraints(domain: str) -> x509.NameConstraints:
    """The domain and its subdomains; no IP address (an excluded subtree for each family,
    since a name type without a permitted subtree would be unconstrained)."""
    return x509.NameConstraints(
        permitted_subtrees=[x509.DNSName(domain)],
        excluded_subtrees=[
            x509.IPAddress(ipaddress.ip_network("0.0.0.0/0")),
            x509.IPAddress(ipaddress.ip_network("::/0")),
        ],
    )


def _constraints(cert: x509.Certificate) -> x509.NameConstraints | None:
    try:
        return cert.extensions.get_extension_for_class(x509.NameConstraints).value
    except x509.ExtensionNotFound:
        return None


def platform_ca(secrets: Secrets, platform_name: str, domain: str) -> tuple[str, str]:
    """(certificate PEM, key PEM) of the platform CA for `domain`, created on first use and
    re-created when the stored one is not constrained to that domain."""
    if secrets.exists("ca.crt"):
        stored = x509.load_pem_x509_certificate(secrets.read("ca.crt").encode())
        if _constraints(stored) != name_constraints(domain):
            logger.warning(
                f"kubi: the platform CA ({secrets.path('ca.crt')}) is not constrained to "
                f"{domain}: replacing it; every host trusts the new one after this run"
            )
            secrets.remove("ca.crt")
    if not secrets.exists("ca.crt"):
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"kubi {platform_name} CA")])
        now = _now()
        cert = self_signed_ca(
            key, name, now, CA_DAYS, path_length=0, extra=(name_constraints(domain),)
        )
        secrets.write("ca.key", _key_pem(key))  # the key first: a cert without key is useless
        secrets.write("ca.crt", _cert_pem(cert))
    return secrets.read("ca.crt"), secrets.read("ca.key")


def key_usage(
    *, digital_signature: bool = False, key_cert_sign: bool = False, crl_sign: bool = False
) -> x509.KeyUsage:
    """A KeyUsage extension with only the named uses."""
    return x509.KeyUsage(
        digital_signature=digital_signature, content_commitment=False, key_encipherment=False,
        data_encipherment=False, key_agreement=False, key_cert_sign=key_cert_sign,
        crl_sign=crl_sign, encipher_only=False, decipher_only=False,
    )  # fmt: skip


def self_signed_ca(
    key: CertificateIssuerPrivateKeyTypes,
    name: x509.Name,
    now: dt.datetime,
    days: int,
    path_length: int | None,
    digital_signature: bool = False,
    extra: tuple[x509.ExtensionType, ...] = (),
) -> x509.Certificate:
    """A CA certificate: `key` signs itself, valid from 5 minutes ago (hosts whose clock
    is a bit behind) for `days`; it signs certificates and CRLs (and, with
    `digital_signature`, what kubeadm's CAs also sign); `extra` extensions are critical."""
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=path_length), critical=True)
        .add_extension(
            key_usage(digital_signature=digital_signature, key_cert_sign=True, crl_sign=True),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
    )
    for extension in extra:
        builder = builder.add_extension(extension, critical=True)
    return builder.sign(key, hashes.SHA256())


def _sans(cert: x509.Certificate) -> set[str]:
    ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return {str(v) for v in ext.get_values_for_type(x509.DNSName)} | {
        str(v) for v in ext.get_values_for_type(x509.IPAddress)
    }


def _signed_by(cert: x509.Certificate, ca: x509.Certificate) -> bool:
    """Issued by this very CA (a replaced CA keeps the subject, not the key)."""
    try:
        aki = cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
        ski = ca.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    except x509.ExtensionNotFound:
        return False
    return cert.issuer == ca.subject and aki.key_identifier == ski.digest


def in_domain(name: str, domain: str) -> bool:
    return name == domain or name.endswith(f".{domain}")


def server_certificate(
    secrets: Secrets, platform_name: str, domain: str, name: str, dns_names: Sequence[str]
) -> tuple[str, str]:
    """(certificate PEM, key PEM) for a server, signed by the platform CA.

    Only names of the platform's domain (the CA vouches for no other); stored as
    `<name>.crt` / `<name>.key`; kept as long as it has the wanted names, comes from the
    current CA and is not about to expire, so converging twice yields the same file.
    """
    outside = [n for n in dns_names if not in_domain(n, domain)]
    if outside or not dns_names:
        raise ValueError(
            f"certificate {name}: names {outside or '(none)'} are not in the platform's domain "
            f"{domain}, which is all the platform CA may vouch for"
        )
    wanted = set(dns_names)
    ca_pem, ca_key_pem = platform_ca(secrets, platform_name, domain)
    ca = x509.load_pem_x509_certificate(ca_pem.encode())
    if secrets.exists(f"{name}.crt"):
        cert = x509.load_pem_x509_certificate(secrets.read(f"{name}.crt").encode())
        fresh = cert.not_valid_after_utc - _now() > RENEW_BEFORE
        if fresh and _sans(cert) == wanted and _signed_by(cert, ca):
            return secrets.read(f"{name}.crt"), secrets.read(f"{name}.key")
    ca_key = serialization.load_pem_private_key(ca_key_pem.encode(), password=None)
    if not isinstance(ca_key, ec.EllipticCurvePrivateKey):  # platform_ca makes ECDSA keys
        raise ValueError("the platform CA key (ca.key) is not an ECDSA key")
    key = ec.generate_private_key(ec.SECP256R1())
    now = _now()
    alt_names = [x509.DNSName(d) for d in dns_names]
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, dns_names[0])]))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=SERVER_DAYS))
        .add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .sign(ca_key, hashes.SHA256())
    )
    secrets.write(f"{name}.key", _key_pem(key))
    secrets.write(f"{name}.crt", _cert_pem(cert))
    return secrets.read(f"{name}.crt"), secrets.read(f"{name}.key")
