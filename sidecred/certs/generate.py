"""Build the webhook's CA and serving certificate (EC P-256, SHA-256).

Pure apart from key generation and random serials: the clock is an argument.
`sidecred certs` keeps the CA (its key 0600 beside ca.crt) so that renewing the
serving certificate never changes the caBundle, and rotates the CA in steps with
both CAs in the bundle in between (certs/README.md).
"""

from __future__ import annotations

import base64
import datetime as dt
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

# Certificates are valid from slightly in the past so that a node whose clock
# lags a little behind still accepts a certificate issued a moment ago.
CLOCK_SKEW_ALLOWANCE = dt.timedelta(minutes=5)
DEFAULT_VALIDITY_DAYS = 365  # the serving certificate
DEFAULT_CA_VALIDITY_DAYS = 3650  # the kept CA outlives many serving certificates


@dataclass(frozen=True)
class IssuedCertificate:
    key: ec.EllipticCurvePrivateKey
    certificate: x509.Certificate


def service_dns_names(service: str, namespace: str) -> list[str]:
    """The names the API server may use to reach the webhook Service."""
    return [
        service,
        f"{service}.{namespace}",
        f"{service}.{namespace}.svc",
        f"{service}.{namespace}.svc.cluster.local",
    ]


def _key_usage(*, signs_certificates: bool) -> x509.KeyUsage:
    """Digital signature only (an EC key signs, never enciphers), plus cert and CRL signing for a CA."""
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=signs_certificates,
        crl_sign=signs_certificates,
        encipher_only=False,
        decipher_only=False,
    )


def build_ca(common_name: str, now: dt.datetime, days: int) -> IssuedCertificate:
    """A self-signed CA that may sign only end-entity certificates (path length 0)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - CLOCK_SKEW_ALLOWANCE)
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            _key_usage(signs_certificates=True),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return IssuedCertificate(key=key, certificate=certificate)


def build_serving_certificate(
    ca: IssuedCertificate, service: str, namespace: str, now: dt.datetime, days: int
) -> IssuedCertificate:
    """A server certificate for the webhook Service, signed by `ca`."""
    key = ec.generate_private_key(ec.SECP256R1())
    names = service_dns_names(service, namespace)
    ca_ski = ca.certificate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    not_after = min(now + dt.timedelta(days=days), ca.certificate.not_valid_after_utc)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[2])]))
        .issuer_name(ca.certificate.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - CLOCK_SKEW_ALLOWANCE)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            _key_usage(signs_certificates=False),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=False
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False
        )
        .sign(ca.key, hashes.SHA256())
    )
    return IssuedCertificate(key=key, certificate=certificate)


def certificate_pem(certificate: x509.Certificate) -> bytes:
    return certificate.public_bytes(serialization.Encoding.PEM)


def private_key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def bundle_pem(certificates: list[x509.Certificate]) -> bytes:
    return b"".join(certificate_pem(certificate) for certificate in certificates)


def ca_bundle(certificates: list[x509.Certificate]) -> str:
    """The `caBundle` value for webhook configurations: base64 of the CAs' PEM, one line."""
    return base64.b64encode(bundle_pem(certificates)).decode("ascii")


def load_ca(key_pem: bytes, bundle: bytes) -> tuple[IssuedCertificate, list[x509.Certificate]]:
    """The CA whose key is `key_pem` (found in `bundle`), and the bundle's other CAs.

    Raises ValueError when the key is not an EC key or no certificate in the bundle is its.
    """
    key = serialization.load_pem_private_key(key_pem, password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ValueError("the CA key is not an EC private key")
    certificates = x509.load_pem_x509_certificates(bundle)
    public = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    for certificate in certificates:
        theirs = certificate.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        if theirs == public:
            others = [c for c in certificates if c is not certificate]
            return IssuedCertificate(key=key, certificate=certificate), others
    raise ValueError("no certificate in the CA bundle belongs to the CA key")


def still_valid(certificates: list[x509.Certificate], now: dt.datetime) -> list[x509.Certificate]:
    return [c for c in certificates if c.not_valid_after_utc > now]


def issued_by(certificate: x509.Certificate, ca: x509.Certificate) -> bool:
    try:
        certificate.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True
