"""The lab CA: a CA certificate, server certificates with the right names, files on disk."""

from __future__ import annotations

import datetime
import ipaddress
import ssl
import stat
from pathlib import Path

from cryptography import x509

from rms.lab.ca import LabCA


def test_the_ca_issues_server_certificates_for_names_and_addresses(tmp_path: Path) -> None:
    ca = LabCA.create()
    cert_pem, key_pem = ca.issue(["discovery.lab.test"], ["127.0.0.1", "::1"])
    cert = x509.load_pem_x509_certificate(cert_pem)
    cert.verify_directly_issued_by(ca.cert)
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.DNSName) == ["discovery.lab.test"]
    assert sans.get_values_for_type(x509.IPAddress) == [
        ipaddress.ip_address("127.0.0.1"),
        ipaddress.ip_address("::1"),
    ]
    assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert ca.cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert b"PRIVATE KEY" in key_pem
    assert "PRIVATE" not in repr(ca)


def test_written_files_load_into_tls_contexts(tmp_path: Path) -> None:
    ca = LabCA.create()
    files = ca.write_server(tmp_path / "tls", "mirror-1", ["discovery.lab.test"], ["127.0.0.1"])
    assert stat.S_IMODE(files.key.stat().st_mode) == 0o600
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(files.cert, files.key)
    client = ssl.create_default_context(cafile=str(files.ca))
    assert client.get_ca_certs()[0]["subject"] == ((("commonName", "True Cloud lab CA"),),)


def test_a_saved_ca_loads_back(tmp_path: Path) -> None:
    ca = LabCA.create(now=datetime.datetime(2030, 1, 1, tzinfo=datetime.UTC))
    ca.save(tmp_path)
    again = LabCA.load(tmp_path)
    assert again.cert == ca.cert
    assert stat.S_IMODE((tmp_path / "ca.key").stat().st_mode) == 0o600
    cert = x509.load_pem_x509_certificate(again.issue(["x.test"])[0])
    cert.verify_directly_issued_by(ca.cert)
    assert ca.cert.not_valid_before_utc.year == 2029
