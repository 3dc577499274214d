"""An organization's own CA bundle (a corporate CA in front of Azure DevOps Server) is trusted for its calls,
and certificates are always verified: a server whose CA is not trusted gets no request at all."""

from __future__ import annotations

import datetime
import ipaddress
import ssl
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from bridge import errors
from bridge.clients.azure_devops import AzureDevOpsClient, PersonalAccessToken
from bridge.clients.http import RequestsTransport, environment_settings
from bridge.crypto import SecretBox, generate_key
from bridge.models import Organization
from bridge.services.connections import Connections
from bridge.settings import Settings


def certificate(tmp_path):
    """A corporate CA and a certificate it signed for 127.0.0.1."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Fabrikam Corporate CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(1).not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True).sign(ca_key, hashes.SHA256()))
    cert = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "tfs")]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(2).not_valid_before(now)
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False).sign(ca_key, hashes.SHA256()))
    pem = tmp_path / "server.pem"
    pem.write_bytes(cert.public_bytes(serialization.Encoding.PEM) + key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    bundle = tmp_path / "corporate-ca.pem"
    bundle.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    return pem, bundle


@pytest.fixture
def server(tmp_path):
    pem, bundle = certificate(tmp_path)
    seen = []

    class Server(BaseHTTPRequestHandler):
        def do_GET(self):
            seen.append(self.path)
            body = b'{"deploymentType": "onPremises", "instanceId": "i-1", "authenticatedUser": {"id": "u-1"}}'
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    httpd = HTTPServer(("127.0.0.1", 0), Server)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(pem)
    httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    environment_settings.cache_clear()
    yield f"https://127.0.0.1:{httpd.server_port}/tfs/DefaultCollection", bundle, seen
    httpd.shutdown()


def test_the_organizations_ca_bundle_is_trusted_and_nothing_else_is(server, monkeypatch):
    url, bundle, seen = server
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    trusting = AzureDevOpsClient(url, PersonalAccessToken("pat"), api_version="6.0",
                                 transport=RequestsTransport(ca_bundle=str(bundle)))
    assert trusting.connection_data()["deployment"] == "onPremises"
    assert seen == ["/tfs/DefaultCollection/_apis/connectionData?api-version=6.0-preview"]
    with pytest.raises(errors.TransportError, match="SSLError"):  # the public CAs do not vouch for it
        AzureDevOpsClient(url, PersonalAccessToken("pat"), api_version="6.0").connection_data()


def test_connections_give_each_organization_its_version_and_its_bundle(tmp_path):
    key = generate_key()
    connections = Connections(Settings(secret_keys=(key,)), SecretBox((key,)))
    org = Organization(name="DefaultCollection", url="https://tfs.example.com/tfs/DefaultCollection",
                       pat_enc=SecretBox((key,)).encrypt("pat"), api_version="6.0", ca_bundle="/etc/ssl/corp.pem")
    client = connections.azure_devops(org)
    assert client.api_version == "6.0" and client.transport.ca_bundle == "/etc/ssl/corp.pem"
    cloud = connections.azure_devops(Organization(name="fabrikam", url="https://dev.azure.com/fabrikam",
                                                  pat_enc=SecretBox((key,)).encrypt("pat")))
    assert cloud.api_version == "7.1" and cloud.transport.ca_bundle is None
