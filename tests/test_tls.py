"""TLS, mutual TLS and the bearer token, against real services on loopback.

A throwaway CA signs a service certificate (SAN localhost and 127.0.0.1) and a client
certificate; a second, unrelated CA signs an impostor's. The measurement service (the
cheapest) serves with ``--tls-client-ca`` and ``--auth-token-file``; a real assistant calls
a text service over mTLS with the token.
"""

from __future__ import annotations

import datetime
import json
import subprocess
import sys
from pathlib import Path

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from conftest import free_port, start_service
from radmesh.common import security
from radmesh.common.config import ServeConfig
from radmesh.common.errors import InvalidInputError, UnauthenticatedError, UnavailableError
from radmesh.common.grpcclient import channel
from radmesh.common.server import RunningServer, ServiceSpec
from radmesh.common.volume import Geometry, Volume
from radmesh.measurement.client import measure_remote
from radmesh.v1 import text_pb2_grpc

x509 = pytest.importorskip("cryptography.x509")
from cryptography.hazmat.primitives import hashes, serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec  # noqa: E402
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID  # noqa: E402

TOKEN = "s3cr3t-token-4f1c9a77e2"


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _cert(subject: str, key, issuer: str, issuer_key, *, ca: bool = False, sans=()) -> x509.Certificate:
    import ipaddress

    now = datetime.datetime.now(datetime.timezone.utc)
    b = (x509.CertificateBuilder().subject_name(_name(subject)).issuer_name(_name(issuer))
         .public_key(key.public_key()).serial_number(x509.random_serial_number())
         .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
         .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if not ca:
        # one certificate per process serves and calls, as a Kubernetes Secret gives it: both usages
        b = b.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH,
                                                   ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
    if sans:
        b = b.add_extension(x509.SubjectAlternativeName(
            [x509.IPAddress(ipaddress.ip_address(s)) if s[0].isdigit() else x509.DNSName(s) for s in sans]),
            critical=False)
    return b.sign(issuer_key, hashes.SHA256())


def _write(path: Path, key, cert: x509.Certificate) -> tuple[str, str]:
    path.with_suffix(".crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    path.with_suffix(".key").write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                                           serialization.PrivateFormat.PKCS8,
                                                           serialization.NoEncryption()))
    return str(path.with_suffix(".crt")), str(path.with_suffix(".key"))


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> dict[str, str]:
    d = tmp_path_factory.mktemp("pki")
    out: dict[str, str] = {}
    for ca_name in ("ca", "other-ca"):
        ca_key = ec.generate_private_key(ec.SECP256R1())
        out[ca_name], _ = _write(d / ca_name, ca_key, _cert(ca_name, ca_key, ca_name, ca_key, ca=True))
        for who, sans in (("server", ("localhost", "127.0.0.1")), ("client", ())):
            if ca_name == "other-ca" and who == "server":
                continue
            key = ec.generate_private_key(ec.SECP256R1())
            prefix = "" if ca_name == "ca" else "other-"
            out[f"{prefix}{who}.crt"], out[f"{prefix}{who}.key"] = _write(
                d / f"{prefix}{who}", key, _cert(f"radmesh-{who}", key, ca_name, ca_key, sans=sans))
    (d / "token").write_text(TOKEN + "\n")  # as a Secret file may end: the newline is not part of it
    out["token"] = str(d / "token")
    (d / "wrong-token").write_text("not-the-token\n")
    out["wrong-token"] = str(d / "wrong-token")
    return out


@pytest.fixture
def as_client():
    """Set this test process's client settings; back to the environment's afterwards."""
    def use(**kw):
        security.configure_client(security.load_client(**kw))
    yield use
    security.configure_client(None)


@pytest.fixture(scope="module")
def measurement(pki, tmp_path_factory):
    # the health wait of start_service goes through this process's channels: mTLS, no token
    security.configure_client(security.load_client(pki["ca"], pki["client.crt"], pki["client.key"]))
    try:
        svc = start_service("measurement", tmp_path_factory.mktemp("meas"), "--drain-s", "0",
                            "--tls-cert", pki["server.crt"], "--tls-key", pki["server.key"],
                            "--tls-client-ca", pki["ca"], "--auth-token-file", pki["token"])
    finally:
        security.configure_client(None)
    yield svc
    svc.stop()


def _health(target: str, creds: grpc.ChannelCredentials | None) -> str:
    ch = grpc.secure_channel(target, creds) if creds else grpc.insecure_channel(target)
    with ch:
        try:
            return health_pb2.HealthCheckResponse.ServingStatus.Name(
                health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=5).status)
        except grpc.RpcError as e:
            return e.code().name


def _small() -> tuple[Volume, Volume]:
    g = Geometry((8, 16, 16), (1.0, 1.0, 2.0))
    lab = np.zeros(g.shape_zyx, np.uint8)
    lab[2:6, 4:12, 4:12] = 6
    return Volume(np.full(g.shape_zyx, 40, np.int16), g), Volume(lab, g)


def test_only_a_client_with_a_certificate_of_the_ca_is_served(pki, measurement):
    pem = {k: Path(v).read_bytes() for k, v in pki.items() if not k.endswith("token")}
    assert _health(measurement.target, None) == "UNAVAILABLE"                           # plaintext
    assert _health(measurement.target, grpc.ssl_channel_credentials(pem["ca"])) == "UNAVAILABLE"  # no cert
    impostor = grpc.ssl_channel_credentials(pem["ca"], pem["other-client.key"], pem["other-client.crt"])
    assert _health(measurement.target, impostor) == "UNAVAILABLE"
    # a server certificate from another CA is not trusted either
    wrong_roots = grpc.ssl_channel_credentials(pem["other-ca"], pem["client.key"], pem["client.crt"])
    assert _health(measurement.target, wrong_roots) == "UNAVAILABLE"
    good = grpc.ssl_channel_credentials(pem["ca"], pem["client.key"], pem["client.crt"])
    assert _health(measurement.target, good) == "SERVING"   # health needs no token


def test_the_token_is_required_compared_and_never_logged(pki, measurement, as_client):
    ct, labels = _small()
    as_client(ca=pki["ca"], cert=pki["client.crt"], key=pki["client.key"])
    with pytest.raises(UnauthenticatedError, match="missing or invalid bearer token") as e:
        measure_remote(measurement.target, ct, labels, timeout_s=30)
    assert measurement.target in str(e.value)
    as_client(ca=pki["ca"], cert=pki["client.crt"], key=pki["client.key"], token_file=pki["wrong-token"])
    with pytest.raises(UnauthenticatedError) as e:
        measure_remote(measurement.target, ct, labels, timeout_s=30)
    assert "not-the-token" not in str(e.value)
    as_client(ca=pki["ca"], cert=pki["client.crt"], key=pki["client.key"], token_file=pki["token"])
    result = measure_remote(measurement.target, ct, labels, timeout_s=30)
    assert result["structures"] and result["structures"][0]["class_index"] == 6
    # the refusals are counted like any other status
    import urllib.request

    metrics = urllib.request.urlopen(f"http://127.0.0.1:{measurement.metrics_port}/metrics", timeout=5).read()
    assert b'method="Measure"' in metrics and b'code="UNAUTHENTICATED"' in metrics
    log = measurement.log()
    assert TOKEN not in log and "not-the-token" not in log
    started = next(json.loads(ln) for ln in log.splitlines() if '"serving"' in ln)
    assert started["tls"] == "mutual" and started["auth"] == "token"


def test_bearer_matching():
    md = (("user-agent", "x"), ("authorization", f"Bearer {TOKEN}"))
    assert security.bearer_matches(md, TOKEN)
    assert security.bearer_matches((("authorization", f"bearer {TOKEN}"),), TOKEN)   # the scheme is case-blind
    assert not security.bearer_matches((("authorization", f"Basic {TOKEN}"),), TOKEN)
    assert not security.bearer_matches((("authorization", f"Bearer {TOKEN}x"),), TOKEN)
    assert not security.bearer_matches((), TOKEN)
    assert TOKEN not in repr(security.load_client(None, token_file=None)) + repr(security.ClientSecurity(token=TOKEN))


def test_a_real_assistant_calls_a_service_over_mutual_tls_with_the_token(pki, tmp_path, as_client):
    """The assistant's own --tls-ca/--tls-cert/--tls-key/--auth-token-file reach its calls: the text
    service (mTLS + token) answers its Parse, then the unreachable segmentation service stops it."""
    from radmesh.assistant.client import ask_stream
    from radmesh.assistant.core import Question, Step
    from radmesh.text.server import SERVICE_NAME, TextServicer

    seen = []

    class Text(TextServicer):  # the real Parse, without warming an encoder it will not use
        def Parse(self, request, context):
            seen.append(context.auth_context().get("x509_common_name"))
            return super().Parse(request, context)

    spec = ServiceSpec("text", (SERVICE_NAME,),
                       lambda server, cfg: text_pb2_grpc.add_TextServiceServicer_to_server(Text(cfg), server))
    text = RunningServer(spec, ServeConfig(port=free_port(), metrics_port=0, drain_s=0, tls_cert=pki["server.crt"],
                                           tls_key=pki["server.key"], tls_client_ca=pki["ca"],
                                           auth_token_file=pki["token"]))
    as_client(ca=pki["ca"], cert=pki["client.crt"], key=pki["client.key"], token_file=pki["token"])
    nowhere = f"127.0.0.1:{free_port()}"
    asst = start_service("assistant", tmp_path, "--drain-s", "0", "--text-url", f"127.0.0.1:{text.port}",
                         "--segmentation-url", nowhere, "--measurement-url", nowhere, "--report-url", nowhere,
                         "--tls-cert", pki["server.crt"], "--tls-key", pki["server.key"], "--tls-ca", pki["ca"],
                         "--tls-client-ca", pki["ca"], "--auth-token-file", pki["token"])
    try:
        ct, _ = _small()
        steps = []
        with pytest.raises(UnavailableError, match="segmentation"):
            for item in ask_stream(asst.target, Question(prompt="segment the liver"), ct, timeout_s=60):
                if isinstance(item, Step):
                    steps.append(item)
        assert any(s.stage == "parsing" and "understood: liver" in s.message for s in steps), [s.message for s in steps]
        assert seen == [[b"radmesh-server"]]   # the assistant showed its certificate
        as_client(ca=pki["ca"], cert=pki["client.crt"], key=pki["client.key"])   # no token: a streaming RPC too
        with pytest.raises(UnauthenticatedError):
            list(ask_stream(asst.target, Question(prompt="segment the liver"), ct, timeout_s=60))
    finally:
        asst.stop()
        text.server.stop(grace=0).wait()
    assert TOKEN not in asst.log()


def _serve_error(*flags: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "radmesh.cli", "serve", "measurement", "--port", str(free_port()),
                           "--metrics-port", "0", *flags], capture_output=True, text=True, timeout=60)


def test_bad_files_are_one_line_at_startup(pki, tmp_path):
    missing = str(tmp_path / "nope.crt")
    cases = {
        "no such file": ("--tls-cert", missing, "--tls-key", pki["server.key"]),
        "is not the private key of": ("--tls-cert", pki["server.crt"], "--tls-key", pki["client.key"]),
        "--tls-key go together": ("--tls-cert", pki["server.crt"]),
        "not a PEM CA certificate": ("--tls-cert", pki["server.crt"], "--tls-key", pki["server.key"],
                                     "--tls-client-ca", pki["token"]),
        "needs --tls-cert": ("--tls-client-ca", pki["ca"]),
        "empty": ("--auth-token-file", str(tmp_path / "empty")),
    }
    (tmp_path / "empty").write_text("\n")
    for expected, flags in cases.items():
        out = _serve_error(*flags)
        lines = out.stderr.strip().splitlines()
        assert out.returncode != 0 and len(lines) == 1 and expected in lines[0], (expected, out.stderr)
        assert lines[0].startswith("radmesh: error: ") and "Traceback" not in out.stderr
    with pytest.raises(InvalidInputError, match="give --tls-ca too"):
        security.load_client(None, pki["client.crt"], pki["client.key"])


def test_the_flags_read_their_variables(pki, monkeypatch):
    import argparse

    from radmesh.common.config import add_serve_arguments, serve_config_from_args

    names = {"RADMESH_TLS_CERT": pki["server.crt"], "RADMESH_TLS_KEY": pki["server.key"],
             "RADMESH_TLS_CLIENT_CA": pki["ca"], "RADMESH_TLS_CA": pki["ca"], "RADMESH_AUTH_TOKEN_FILE": pki["token"]}
    for k, v in names.items():
        monkeypatch.setenv(k, v)
    p = argparse.ArgumentParser()
    add_serve_arguments(p, default_port=1, default_metrics_port=0)
    cfg = serve_config_from_args(p.parse_args([]))
    assert (cfg.tls_cert, cfg.tls_key, cfg.tls_client_ca, cfg.tls_ca, cfg.auth_token_file) == tuple(names.values())
    # a process that never configured itself (a Ray worker) takes the same variables
    security.configure_client(None)
    try:
        s = security.client_security()
        assert s.ca_file == pki["ca"] and s.token == TOKEN and s.triton_options()["ssl"] is True
    finally:
        security.configure_client(None)


def test_the_healthcheck_speaks_tls(pki, measurement, monkeypatch):
    def probe(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
        import os

        clean = {k: v for k, v in os.environ.items() if not k.startswith("RADMESH_TLS")}
        return subprocess.run([sys.executable, "-m", "radmesh.common.healthcheck", "--target", measurement.target,
                               *args], capture_output=True, text=True, timeout=60, env={**clean, **(env or {})})

    assert probe().returncode == 1
    # as in a service container: its own certificate and the CA from the environment
    env = {"RADMESH_TLS_CA": pki["ca"], "RADMESH_TLS_CERT": pki["client.crt"], "RADMESH_TLS_KEY": pki["client.key"]}
    assert probe(env=env).returncode == 0
    # a certificate issued to a service name, probed on 127.0.0.1
    assert probe("--tls-server-name", "localhost", env=env).returncode == 0
    assert probe("--tls-server-name", "elsewhere.example", env=env).returncode == 1
    bad = probe("--tls-ca", pki["token"])
    assert bad.returncode == 2 and "not a PEM CA certificate" in bad.stderr and "Traceback" not in bad.stderr


def test_channel_takes_explicit_settings(pki, measurement):
    s = security.load_client(pki["ca"], pki["client.crt"], pki["client.key"])
    with channel(measurement.target, security=s) as ch:
        reply = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=5)
    assert reply.status == health_pb2.HealthCheckResponse.SERVING


def test_the_triton_client_uses_the_same_tls(pki, measurement, as_client):
    """tritonclient against a TLS port that is not Triton: UNIMPLEMENTED means the (mutual) handshake
    went through; with plaintext the same call cannot even connect."""
    from tritonclient.utils import InferenceServerException

    from radmesh.segmentation.triton_runner import TritonRunner

    def status_of_a_call() -> str:
        client, _ = TritonRunner(measurement.target, "universal_seg", shared_memory=False)._connect()
        try:
            client.is_server_live(client_timeout=10)
        except InferenceServerException as e:
            return str(e.status())
        finally:
            client.close()
        return "OK"

    as_client(ca=pki["ca"], cert=pki["client.crt"], key=pki["client.key"])
    assert "UNIMPLEMENTED" in status_of_a_call()
    as_client(ca=None)
    assert "UNAVAILABLE" in status_of_a_call()
