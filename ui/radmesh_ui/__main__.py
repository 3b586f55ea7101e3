"""``python -m radmesh_ui``: serve the chat UI.

    python -m radmesh_ui --assistant-url 127.0.0.1:50051 --host 127.0.0.1 --port 7860 \\
        --samples DIR --root-path /radmesh --auth-file FILE

Every flag has an environment variable (``RADMESH_UI_ASSISTANT_URL``, ``RADMESH_UI_HOST``,
``RADMESH_UI_PORT``, ``RADMESH_UI_SAMPLES``, ``RADMESH_UI_ROOT_PATH``, ``RADMESH_UI_AUTH_FILE``,
``RADMESH_UI_WORKDIR``, ``RADMESH_UI_NO_LOGIN``, ``RADMESH_UI_NO_FIGURES``, ``RADMESH_UI_LOG_LEVEL``);
credentials also come from ``RADMESH_UI_USER`` / ``RADMESH_UI_PASSWORD``. The assistant is
reached as every radmesh caller reaches a service: ``--tls-ca``, ``--tls-cert``, ``--tls-key``,
``--auth-token-file`` (``RADMESH_TLS_CA``, ``RADMESH_TLS_CERT``, ``RADMESH_TLS_KEY``,
``RADMESH_AUTH_TOKEN_FILE``, without the UI prefix: the mesh's names). The auth file holds
one line ``user:password``. Served on a host other than loopback, the UI requires a login
unless ``--no-login`` is given. Prints one line ``ui ready at http://HOST:PORT/PREFIX/`` once
serving; SIGTERM or SIGINT stop it (exit 0). Errors: one line on stderr, exit 2.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

ENV = "RADMESH_UI_"


def _env(name: str, default: str | None = None) -> str | None:
    v = os.environ.get(ENV + name)
    return v if v not in (None, "") else default


def _flag(name: str) -> bool:
    return (_env(name, "") or "").lower() in ("1", "true", "yes", "on")


class UsageError(Exception):
    pass


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m radmesh_ui", description="radmesh's chat UI (Gradio + NiiVue).")
    p.add_argument("--assistant-url", default=_env("ASSISTANT_URL", "127.0.0.1:50051"),
                   help="the assistant's gRPC address HOST:PORT (RADMESH_UI_ASSISTANT_URL)")
    p.add_argument("--host", default=_env("HOST", "127.0.0.1"), help="address to listen on (RADMESH_UI_HOST)")
    p.add_argument("--port", type=int, default=int(_env("PORT", "7860")),
                   help="port; 0 picks a free one (RADMESH_UI_PORT)")
    p.add_argument("--samples", default=_env("SAMPLES"),
                   help="folder of sample studies: DIR/<name>/{ct.nii.gz,sample.json} (RADMESH_UI_SAMPLES)")
    p.add_argument("--root-path", default=_env("ROOT_PATH", ""),
                   help="serve under this path prefix, e.g. /radmesh (RADMESH_UI_ROOT_PATH)")
    p.add_argument("--auth-file", default=_env("AUTH_FILE"),
                   help="file with one line user:password; or RADMESH_UI_USER / RADMESH_UI_PASSWORD")
    p.add_argument("--no-login", action="store_true", default=_flag("NO_LOGIN"),
                   help="serve without a login even on a non-loopback address (RADMESH_UI_NO_LOGIN)")
    p.add_argument("--workdir", default=_env("WORKDIR"),
                   help="folder for per-user files (default: a temporary folder) (RADMESH_UI_WORKDIR)")
    p.add_argument("--no-figures", action="store_true", default=_flag("NO_FIGURES"),
                   help="do not ask for key images (RADMESH_UI_NO_FIGURES)")
    p.add_argument("--log-level", default=_env("LOG_LEVEL", "warning"),
                   choices=["critical", "error", "warning", "info", "debug"], help="(RADMESH_UI_LOG_LEVEL)")
    from radmesh.common.config import add_client_security_arguments

    add_client_security_arguments(p)  # TLS and the bearer token towards the assistant
    return p.parse_args(argv)


def read_credentials(args: argparse.Namespace) -> tuple[str, str] | None:
    if args.auth_file:
        path = Path(args.auth_file)
        try:
            line = next((ln.strip() for ln in path.read_text().splitlines() if ln.strip()), "")
        except OSError as e:
            raise UsageError(f"cannot read the auth file {path}: {e.strerror or e}") from None
        user, sep, password = line.partition(":")
        if not sep or not user or not password:
            raise UsageError(f"the auth file {path} must hold one line user:password")
        return user, password
    user, password = _env("USER"), _env("PASSWORD")
    if user or password:
        if not (user and password):
            raise UsageError("give both RADMESH_UI_USER and RADMESH_UI_PASSWORD")
        return user, password
    return None


def is_loopback(host: str) -> bool:
    from radmesh_ui.app import LOOPBACK

    return host in LOOPBACK or host.startswith("127.")


def main(argv: list[str] | None = None) -> int:
    from radmesh.common.errors import RadmeshError
    from radmesh.common.security import client_security_from_args, configure_client

    try:
        args = parse_args(argv)
        # every call to the assistant (radmesh.assistant.client) goes through channels made from this
        configure_client(client_security_from_args(args))
    except RadmeshError as e:
        print(f"radmesh-ui: {e}", file=sys.stderr)
        return 2
    try:
        auth = read_credentials(args)
        if auth is None and not is_loopback(args.host) and not args.no_login:
            raise UsageError(f"refusing to serve on {args.host} without a login: give --auth-file FILE or "
                             "RADMESH_UI_USER and RADMESH_UI_PASSWORD (or --no-login)")
        if args.samples and not Path(args.samples).is_dir():
            raise UsageError(f"--samples {args.samples}: no such folder")
        if not 0 <= args.port <= 65535:
            raise UsageError(f"--port {args.port}: not a port number")
    except UsageError as e:
        print(f"radmesh-ui: {e}", file=sys.stderr)
        return 2

    import logging

    import uvicorn

    from radmesh_ui.app import UIConfig, build_app

    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    config = UIConfig(assistant_url=args.assistant_url, samples_dir=Path(args.samples) if args.samples else None,
                      workdir=Path(args.workdir) if args.workdir else None, root_path=args.root_path, auth=auth,
                      host=args.host, port=args.port, figures=not args.no_figures)
    app = build_app(config)

    class Server(uvicorn.Server):
        def handle_exit(self, sig, frame):
            super().handle_exit(sig, frame)
            self._captured_signals.clear()  # a stop asked for is a clean exit (0), not death by signal

        async def startup(self, sockets=None):
            await super().startup(sockets)
            if self.started:
                port = config.port
                for server in getattr(self, "servers", []):
                    for sock in server.sockets or []:
                        port = sock.getsockname()[1]
                        break
                host = f"[{config.host}]" if ":" in config.host else config.host
                print(f"ui ready at http://{host}:{port}{config.prefix}/", flush=True)

    server = Server(uvicorn.Config(app, host=args.host, port=args.port, log_level=args.log_level,
                                   timeout_graceful_shutdown=5, access_log=args.log_level in ("info", "debug"),
                                   lifespan="on"))
    try:
        server.run()
    finally:
        app.state.close()
    if not server.started:
        print(f"radmesh-ui: could not listen on {args.host}:{args.port}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
