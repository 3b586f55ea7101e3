"""TLS, mutual TLS and the bearer token of the mesh, from PEM and token files.

Serving (``radmesh serve NAME``): ``--tls-cert`` and ``--tls-key`` make the gRPC port speak
TLS; ``--tls-client-ca`` also requires a client certificate signed by that CA (mTLS);
``--auth-token-file`` requires ``authorization: Bearer TOKEN`` on every RPC except
grpc.health.v1 and reflection (probes and discovery carry no secret).

Calling (every channel of :func:`radmesh.common.grpcclient.channel`, and Triton): ``--tls-ca``
makes channels TLS and verifies servers against that CA; the process's own ``--tls-cert`` /
``--tls-key`` is its client certificate; the token file's token goes with every call. A
process states its settings once at startup (:func:`configure_client`); one that never does
(a Ray worker, a script) takes them from the ``RADMESH_TLS_*`` / ``RADMESH_AUTH_TOKEN_FILE``
variables at its first call, so a pod's environment is enough.

Files are read and checked once, at startup, so a bad Secret is one line then, not a
handshake failure at the first request. Tokens are never logged, echoed or put in a repr.
"""

from __future__ import annotations

import hmac
import os
import ssl
import threading
from collections import namedtuple
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import grpc

from radmesh.common.errors import InvalidInputError, UnauthenticatedError

# Probes and reflection stay open: kubelet and exec probes have no token, and the API's
# shape is no secret.
OPEN_METHOD_PREFIXES = ("/grpc.health.v1.Health/", "/grpc.reflection.")
REFUSED = "missing or invalid bearer token"


def _read(path: str, flag: str, what: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except FileNotFoundError:
        raise InvalidInputError(f"{flag} {path}: no such file") from None
    except IsADirectoryError:
        raise InvalidInputError(f"{flag} {path}: is a folder, not the {what} file") from None
    except OSError as e:
        raise InvalidInputError(f"{flag} {path}: cannot read the {what} ({e.strerror or e})") from None


def _check_ca(path: str, flag: str) -> bytes:
    pem = _read(path, flag, "CA certificate")
    try:
        ssl.create_default_context(cafile=path)
    except ssl.SSLError:
        raise InvalidInputError(f"{flag} {path}: not a PEM CA certificate") from None
    return pem


def _check_pair(cert: str, key: str, cert_flag: str = "--tls-cert", key_flag: str = "--tls-key") -> tuple[bytes, bytes]:
    cert_pem, key_pem = _read(cert, cert_flag, "certificate"), _read(key, key_flag, "private key")
    # OpenSSL through the stdlib checks what grpc would only find at the first handshake.
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        ctx.load_verify_locations(cadata=cert_pem.decode("ascii", errors="replace"))
    except (ssl.SSLError, ValueError):
        raise InvalidInputError(f"{cert_flag} {cert}: not a PEM certificate") from None
    try:
        # an empty password: an encrypted key fails here instead of OpenSSL prompting on a terminal
        ctx.load_cert_chain(cert, key, password=b"")
    except ssl.SSLError as e:
        if "KEY_VALUES_MISMATCH" in str(e):
            raise InvalidInputError(f"{key_flag} {key} is not the private key of {cert_flag} {cert}") from None
        raise InvalidInputError(f"{key_flag} {key}: not an unencrypted PEM private key") from None
    return cert_pem, key_pem


def read_token(path: str, flag: str = "--auth-token-file") -> str:
    raw = _read(path, flag, "token")
    token = raw.decode("ascii", errors="replace").strip()
    if not token:
        raise InvalidInputError(f"{flag} {path}: the file is empty")
    if not all(33 <= ord(c) <= 126 for c in token):
        # gRPC metadata values are printable ASCII; a space or newline inside would split the header
        raise InvalidInputError(f"{flag} {path}: the token must be one word of printable ASCII")
    return token


@dataclass(frozen=True)
class ServerSecurity:
    """What a gRPC port requires: TLS (a certificate), client certificates, a bearer token."""

    cert_pem: bytes | None = field(default=None, repr=False)
    key_pem: bytes | None = field(default=None, repr=False)
    client_ca_pem: bytes | None = field(default=None, repr=False)
    token: str | None = field(default=None, repr=False)

    @property
    def tls(self) -> str:
        return "mutual" if self.client_ca_pem else "on" if self.cert_pem else "off"

    def credentials(self) -> grpc.ServerCredentials | None:
        if self.cert_pem is None:
            return None
        return grpc.ssl_server_credentials([(self.key_pem, self.cert_pem)], root_certificates=self.client_ca_pem,
                                           require_client_auth=self.client_ca_pem is not None)

    def interceptors(self) -> list[grpc.ServerInterceptor]:
        return [TokenInterceptor(self.token)] if self.token else []


def load_server(cert: str | None, key: str | None, client_ca: str | None = None,
                token_file: str | None = None) -> ServerSecurity:
    if bool(cert) != bool(key):
        raise InvalidInputError("--tls-cert and --tls-key go together: give both (or neither, for plaintext)")
    if client_ca and not cert:
        raise InvalidInputError("--tls-client-ca needs --tls-cert and --tls-key: client certificates exist only "
                                "over TLS")
    cert_pem, key_pem = _check_pair(cert, key) if cert else (None, None)
    return ServerSecurity(cert_pem, key_pem, _check_ca(client_ca, "--tls-client-ca") if client_ca else None,
                          read_token(token_file) if token_file else None)


@dataclass(frozen=True)
class ClientSecurity:
    """How this process calls others: plaintext, TLS against a CA, with a client certificate, a token."""

    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    ca_pem: bytes | None = field(default=None, repr=False)
    cert_pem: bytes | None = field(default=None, repr=False)
    key_pem: bytes | None = field(default=None, repr=False)
    token: str | None = field(default=None, repr=False)

    def credentials(self) -> grpc.ChannelCredentials | None:
        if self.ca_pem is None:
            return None
        return grpc.ssl_channel_credentials(root_certificates=self.ca_pem, private_key=self.key_pem,
                                            certificate_chain=self.cert_pem)

    def metadata(self) -> tuple[tuple[str, str], ...]:
        return (("authorization", f"Bearer {self.token}"),) if self.token else ()

    def triton_options(self) -> dict[str, object]:
        """Keyword arguments of tritonclient.grpc.InferenceServerClient (it takes file paths).

        No token: Triton checks none, and a secret should not travel where it is not needed."""
        if self.ca_file is None:
            return {}
        return {"ssl": True, "root_certificates": self.ca_file, "private_key": self.key_file,
                "certificate_chain": self.cert_file}


def load_client(ca: str | None, cert: str | None = None, key: str | None = None, token_file: str | None = None,
                *, serving: bool = False) -> ClientSecurity:
    """``serving``: cert and key are the process's server certificate, shown to servers only over TLS
    (``--tls-ca``); a plain client given a certificate without ``--tls-ca`` is refused as a mistake."""
    if bool(cert) != bool(key):
        raise InvalidInputError("--tls-cert and --tls-key go together: give both (or neither)")
    if cert and not ca and not serving:
        raise InvalidInputError("--tls-cert/--tls-key are a client certificate for TLS: give --tls-ca too "
                                "(the CA that signed the server's certificate)")
    token = read_token(token_file) if token_file else None
    if not ca:
        return ClientSecurity(token=token)
    cert_pem, key_pem = _check_pair(cert, key) if cert else (None, None)
    return ClientSecurity(ca, cert, key, _check_ca(ca, "--tls-ca"), cert_pem, key_pem, token)


def client_security_from_args(args, *, serving: bool = False) -> ClientSecurity:
    return load_client(args.tls_ca, args.tls_cert, args.tls_key, args.auth_token_file, serving=serving)


# ---- the process's client settings ----------------------------------------------------------
_lock = threading.Lock()
_client: ClientSecurity | None = None


def configure_client(security: ClientSecurity | None) -> None:
    """Set how every channel of this process connects; None: from the environment at the next call."""
    global _client
    with _lock:
        _client = security


def client_security() -> ClientSecurity:
    global _client
    with _lock:
        if _client is None:
            env = os.environ.get
            _client = load_client(env("RADMESH_TLS_CA") or None, env("RADMESH_TLS_CERT") or None,
                                  env("RADMESH_TLS_KEY") or None, env("RADMESH_AUTH_TOKEN_FILE") or None,
                                  serving=True)
        return _client


# ---- the token on the wire ------------------------------------------------------------------
def bearer_matches(metadata, token: str) -> bool:
    """Whether ``authorization: Bearer <token>`` is among ``metadata``, compared in constant time."""
    expected = token.encode()
    for key, value in metadata or ():
        if key != "authorization":
            continue
        raw = value if isinstance(value, bytes) else str(value).encode("utf-8", errors="replace")
        scheme, _, given = raw.partition(b" ")
        if scheme.lower() == b"bearer" and hmac.compare_digest(given.strip(), expected):
            return True
    return False


def _refusing(handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
    """The same kind of handler, answering UNAUTHENTICATED (the metrics interceptor maps and counts it)."""
    def refuse(request, context):
        raise UnauthenticatedError(REFUSED)

    kinds: dict[str, Callable] = {
        "unary_unary": grpc.unary_unary_rpc_method_handler, "unary_stream": grpc.unary_stream_rpc_method_handler,
        "stream_unary": grpc.stream_unary_rpc_method_handler, "stream_stream": grpc.stream_stream_rpc_method_handler,
    }
    for kind, make in kinds.items():
        if getattr(handler, kind):
            return make(refuse, handler.request_deserializer, handler.response_serializer)
    return handler  # pragma: no cover - grpc handlers always have one kind


class TokenInterceptor(grpc.ServerInterceptor):
    """Requires the bearer token on every RPC but health and reflection; never logs what it was sent."""

    def __init__(self, token: str):
        self._token = token

    def intercept_service(self, continuation: Callable, handler_call_details: grpc.HandlerCallDetails):
        handler = continuation(handler_call_details)
        if handler is None or handler_call_details.method.startswith(OPEN_METHOD_PREFIXES):
            return handler
        if bearer_matches(handler_call_details.invocation_metadata, self._token):
            return handler
        return _refusing(handler)


class _Details(namedtuple("_Details", ("method", "timeout", "metadata", "credentials", "wait_for_ready",
                                       "compression")), grpc.ClientCallDetails):
    pass


class BearerToken(grpc.UnaryUnaryClientInterceptor, grpc.UnaryStreamClientInterceptor,
                  grpc.StreamUnaryClientInterceptor, grpc.StreamStreamClientInterceptor):
    """Adds the token to every call of a channel. An interceptor rather than call credentials:
    grpc sends call credentials over TLS only, and a token over plaintext must still work
    (a mesh behind a TLS-terminating ingress, tests)."""

    def __init__(self, metadata: tuple[tuple[str, str], ...]):
        self._metadata = metadata

    def _with_token(self, d: grpc.ClientCallDetails) -> _Details:
        return _Details(d.method, d.timeout, (*(d.metadata or ()), *self._metadata), d.credentials,
                        getattr(d, "wait_for_ready", None), getattr(d, "compression", None))

    def intercept_unary_unary(self, continuation, client_call_details, request):
        return continuation(self._with_token(client_call_details), request)

    def intercept_unary_stream(self, continuation, client_call_details, request):
        return continuation(self._with_token(client_call_details), request)

    def intercept_stream_unary(self, continuation, client_call_details, request_iterator):
        return continuation(self._with_token(client_call_details), request_iterator)

    def intercept_stream_stream(self, continuation, client_call_details, request_iterator):
        return continuation(self._with_token(client_call_details), request_iterator)


def secure_channel(target: str, security: ClientSecurity, options: list | None = None) -> grpc.Channel:
    """A channel to ``target`` as ``security`` says: TLS or plaintext, with the token or without."""
    creds = security.credentials()
    ch = grpc.secure_channel(target, creds, options=options) if creds is not None else \
        grpc.insecure_channel(target, options=options)
    return grpc.intercept_channel(ch, BearerToken(security.metadata())) if security.token else ch
