"""A small certificate authority for the lab and the tests: the discovery mirrors' HTTPS.

The real cloud's mirrors use a certificate from a public CA for the well-known name; the lab
has no public CA, so it makes its own, signs each mirror's certificate for the lab's
discovery name and the mirror's addresses, and gives the nodes only that CA to trust.
Keys are ECDSA P-256: small, fast, and accepted by every TLS stack we talk to.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CA_CERT_FILE = "ca.pem"
CA_KEY_FILE = "ca.key"
CA_VALID_DAYS = 3650
SERVER_VALID_DAYS = 397  # the longest a browser-trusted server certificate may live
BACKDATE = datetime.timedelta(hours=1)  # tolerate a host whose clock is a little behind


@dataclass(frozen=True, slots=True)
class ServerFiles:
    """Where a server's certificate, key and the CA that signed them were written."""

    cert: Path
    key: Path
    ca: Path


@dataclass(frozen=True, slots=True, repr=False)
class LabCA:
    """A self-signed CA that issues server certificates; never shows its key."""

    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate

    @classmethod
    def create(cls, name: str = "True Cloud lab CA", now: datetime.datetime | None = None) -> LabCA:
        """A new CA valid for ten years from `now` (default: the current time)."""
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        start = _start(now)
        cert = (
            _builder(subject, subject, key.public_key(), start, CA_VALID_DAYS)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(_key_usage(ca=True), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
            .sign(key, hashes.SHA256())
        )
        return cls(key, cert)

    @classmethod
    def load(cls, directory: Path) -> LabCA:
        """The CA saved in `directory` by `save`."""
        cert = x509.load_pem_x509_certificate((directory / CA_CERT_FILE).read_bytes())
        key = serialization.load_pem_private_key((directory / CA_KEY_FILE).read_bytes(), None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise ValueError(f"{directory / CA_KEY_FILE} is not the lab CA's key")
        return cls(key, cert)

    def save(self, directory: Path) -> Path:
        """Write the CA's certificate and key (0600) into `directory`; the certificate path."""
        directory.mkdir(parents=True, exist_ok=True)
        _write_private(directory / CA_KEY_FILE, _key_pem(self.key))
        cert_path = directory / CA_CERT_FILE
        cert_path.write_bytes(self.cert_pem())
        return cert_path

    def cert_pem(self) -> bytes:
        """The CA certificate in PEM, for trust stores."""
        return self.cert.public_bytes(serialization.Encoding.PEM)

    def issue(
        self,
        dns_names: Sequence[str],
        ips: Sequence[str] = (),
        now: datetime.datetime | None = None,
    ) -> tuple[bytes, bytes]:
        """A server certificate for these names and addresses: (certificate PEM, key PEM)."""
        if not dns_names and not ips:
            raise ValueError("a server certificate needs at least one name or address")
        key = ec.generate_private_key(ec.SECP256R1())
        common = dns_names[0] if dns_names else ips[0]
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])
        names: list[x509.GeneralName] = [x509.DNSName(n) for n in dns_names]
        names += [x509.IPAddress(ipaddress.ip_address(a)) for a in ips]
        cert = (
            _builder(self.cert.subject, subject, key.public_key(), _start(now), SERVER_VALID_DAYS)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(_key_usage(ca=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False)
            .add_extension(x509.SubjectAlternativeName(names), critical=False)
            .add_extension(self._authority_key_id(), critical=False)
            .sign(self.key, hashes.SHA256())
        )
        return cert.public_bytes(serialization.Encoding.PEM), _key_pem(key)

    def write_server(
        self, directory: Path, name: str, dns_names: Sequence[str], ips: Sequence[str] = ()
    ) -> ServerFiles:
        """Issue a server certificate and write `<name>.pem`, `<name>.key` (0600), `ca.pem`."""
        directory.mkdir(parents=True, exist_ok=True)
        cert_pem, key_pem = self.issue(dns_names, ips)
        files = ServerFiles(
            directory / f"{name}.pem", directory / f"{name}.key", directory / CA_CERT_FILE
        )
        _write_private(files.key, key_pem)
        files.cert.write_bytes(cert_pem)
        files.ca.write_bytes(self.cert_pem())
        return files

    def _authority_key_id(self) -> x509.AuthorityKeyIdentifier:
        ski = self.cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
        return x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski.value)

    def __repr__(self) -> str:
        return f"LabCA(subject={self.cert.subject.rfc4514_string()})"


def _start(now: datetime.datetime | None) -> datetime.datetime:
    return (now or datetime.datetime.now(datetime.UTC)) - BACKDATE


def _builder(
    issuer: x509.Name,
    subject: x509.Name,
    public_key: ec.EllipticCurvePublicKey,
    start: datetime.datetime,
    days: int,
) -> x509.CertificateBuilder:
    return (
        x509.CertificateBuilder()
        .issuer_name(issuer)
        .subject_name(subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + datetime.timedelta(days=days))
    )


def _key_usage(*, ca: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=ca,
        crl_sign=ca,
        encipher_only=False,
        decipher_only=False,
    )


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _write_private(path: Path, content: bytes) -> None:
    # Created 0600 from the start, so the key is never readable by others, even briefly.
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(content)
