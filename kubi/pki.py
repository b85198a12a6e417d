"""The platform CA and the certificates it signs, kept in the platform's secrets.

The deployer owns the CA (generated once, ECDSA P-256, 10 years) so that every host and
client can trust platform services without a public CA. Server certificates are reissued
when their names change or when they come within 30 days of expiry.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from collections.abc import Sequence

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

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


def platform_ca(secrets: Secrets, platform_name: str) -> tuple[str, str]:
    """(certificate PEM, key PEM) of the platform CA, created on first use."""
    if not secrets.exists("ca.crt"):
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"kubi {platform_name} CA")])
        now = _now()
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=CA_DAYS))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(False, False, False, False, False, True, True, False, False),
                critical=True,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
            .sign(key, hashes.SHA256())
        )
        secrets.write("ca.key", _key_pem(key))  # the key first: a cert without key is useless
        secrets.write("ca.crt", _cert_pem(cert))
    return secrets.read("ca.crt"), secrets.read("ca.key")


def _sans(cert: x509.Certificate) -> set[str]:
    ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return {str(v) for v in ext.get_values_for_type(x509.DNSName)} | {
        str(v) for v in ext.get_values_for_type(x509.IPAddress)
    }


def server_certificate(
    secrets: Secrets, platform_name: str, name: str, dns_names: list[str], ips: Sequence[str] = ()
) -> tuple[str, str]:
    """(certificate PEM, key PEM) for a server, signed by the platform CA.

    Stored as `<name>.crt` / `<name>.key`; kept as long as it has the wanted names and is
    not about to expire, so converging twice yields the same file.
    """
    wanted = set(dns_names) | {str(ipaddress.ip_address(ip)) for ip in ips}
    ca_pem, ca_key_pem = platform_ca(secrets, platform_name)
    ca = x509.load_pem_x509_certificate(ca_pem.encode())
    if secrets.exists(f"{name}.crt"):
        cert = x509.load_pem_x509_certificate(secrets.read(f"{name}.crt").encode())
        fresh = cert.not_valid_after_utc - _now() > RENEW_BEFORE
        if fresh and _sans(cert) == wanted and cert.issuer == ca.subject:
            return secrets.read(f"{name}.crt"), secrets.read(f"{name}.key")
    ca_key = serialization.load_pem_private_key(ca_key_pem.encode(), password=None)
    if not isinstance(ca_key, ec.EllipticCurvePrivateKey):  # platform_ca makes ECDSA keys
        raise ValueError("the platform CA key (ca.key) is not an ECDSA key")
    key = ec.generate_private_key(ec.SECP256R1())
    now = _now()
    alt_names = [x509.DNSName(d) for d in dns_names] + [
        x509.IPAddress(ipaddress.ip_address(ip)) for ip in ips
    ]
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
