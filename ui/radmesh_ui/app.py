"""The UI's web app: Gradio mounted on FastAPI, beside the viewer page and the per-user files.

Routes (``PREFIX`` is ``UIConfig.root_path``, "" or e.g. "/radmesh"):

- ``PREFIX/``: the Gradio page (:mod:`radmesh_ui.chat`); ``/`` redirects there;
- ``PREFIX/viewer/``: the NiiVue viewer page (``viewer/index.html``, ``viewer.js``, ``viewer.css``)
  and ``PREFIX/viewer/niivue.umd.js`` from npm (``ui/node_modules/@niivue/niivue``);
- ``PREFIX/files/<token>/<name>``: a user's CT, label map and ``state.json``, for the browser
  that owns the token only (same ``radmesh_ui`` cookie), else 404;
- ``PREFIX/healthz``: "ok".

Nothing is fetched from the internet: the theme uses system fonts, NiiVue is served from here.
"""

from __future__ import annotations

import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # no calls home, before Gradio is imported

import logging
import secrets
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import gradio as gr
from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, HTMLResponse, PlainTextResponse, RedirectResponse, Response

from radmesh_ui.chat import CSS, ChatUI
from radmesh_ui.userfiles import COOKIE, Spaces

log = logging.getLogger("radmesh.ui")

VIEWER_DIR = Path(__file__).resolve().parent / "viewer"
NIIVUE_IN_TREE = Path(__file__).resolve().parent.parent / "node_modules" / "@niivue" / "niivue" / "dist" / "niivue.umd.js"
NIIVUE_MISSING = "NiiVue is not installed: run scripts/bootstrap.sh"
LOOPBACK = ("127.0.0.1", "localhost", "::1", "[::1]")


def normalize_prefix(root_path: str | None) -> str:
    p = (root_path or "").strip().strip("/")
    return f"/{p}" if p else ""


@dataclass
class UIConfig:
    assistant_url: str = "127.0.0.1:50051"
    samples_dir: Path | None = None
    workdir: Path | None = None  # per-user files; None: a fresh temporary folder, removed on close
    root_path: str = ""  # serve under this prefix, e.g. "/radmesh"
    auth: tuple[str, str] | None = None  # (user, password): Gradio's login
    host: str = "127.0.0.1"
    port: int = 7860
    figures: bool = True  # key images with every answer
    concurrency: int = 8  # questions answered at once (all users)
    idle_ttl_s: float = 6 * 3600.0  # a user's folder left this long unused is removed
    max_upload: str = "2gb"
    niivue_path: Path | None = None  # niivue.umd.js; None: RADMESH_UI_NIIVUE or ui/node_modules
    _made_workdir: bool = field(default=False, repr=False)

    @property
    def prefix(self) -> str:
        return normalize_prefix(self.root_path)

    def niivue_file(self) -> Path | None:
        for p in (self.niivue_path, os.environ.get("RADMESH_UI_NIIVUE"), NIIVUE_IN_TREE):
            if p and Path(p).is_file():
                return Path(p)
        return None


class ClientCookie:
    """ASGI middleware: every browser gets a random ``radmesh_ui`` cookie on its first request
    (the request itself already carries it), so a user's files can be tied to their browser."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = list(scope.get("headers") or [])
        raw = b"; ".join(v for k, v in headers if k == b"cookie").decode("latin-1")
        if any(part.strip().startswith(f"{COOKIE}=") for part in raw.split(";")):
            return await self.app(scope, receive, send)
        value = secrets.token_urlsafe(24)
        merged = (raw + "; " if raw else "") + f"{COOKIE}={value}"
        scope = dict(scope, headers=[(k, v) for k, v in headers if k != b"cookie"] + [(b"cookie", merged.encode())])
        cookie = f"{COOKIE}={value}; Path=/; HttpOnly; SameSite=Lax".encode()

        async def send_with_cookie(message):
            if message["type"] == "http.response.start":
                message = dict(message, headers=list(message.get("headers") or []) + [(b"set-cookie", cookie)])
            await send(message)

        return await self.app(scope, receive, send_with_cookie)


def build_app(config: UIConfig) -> FastAPI:
    """The FastAPI app serving the whole UI under ``config.prefix``; ``app.state.radmesh_ui``
    is the :class:`~radmesh_ui.chat.ChatUI` (call its ``close()`` on shutdown)."""
    if config.workdir is None:
        config.workdir = Path(tempfile.mkdtemp(prefix="radmesh-ui-"))
        config._made_workdir = True
    workdir = Path(config.workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    spaces = Spaces(workdir)
    for stale in spaces.all():  # folders of an earlier run: their browser sessions are gone
        stale.remove()
    ui = ChatUI(config, spaces)
    prefix = config.prefix

    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None, title="radmesh UI")
    app.state.radmesh_ui = ui

    def close() -> None:
        ui.close()
        if config._made_workdir:
            shutil.rmtree(workdir, ignore_errors=True)

    app.state.close = close

    @app.get(f"{prefix}/healthz", include_in_schema=False)
    def healthz():
        return PlainTextResponse("ok")

    @app.get(f"{prefix}/viewer", include_in_schema=False)
    def viewer_slash():
        return RedirectResponse(f"{prefix}/viewer/", status_code=307)

    @app.get(f"{prefix}/viewer/", include_in_schema=False)
    def viewer_page():
        page = (VIEWER_DIR / "index.html").read_text()
        if config.niivue_file() is None:
            page = page.replace("<!--NIIVUE-MISSING-->", f'<div class="missing" role="alert">{NIIVUE_MISSING}</div>')
        return HTMLResponse(page, headers={"Cache-Control": "no-cache"})

    @app.get(f"{prefix}/viewer/{{name}}", include_in_schema=False)
    def viewer_asset(name: str):
        if name == "niivue.umd.js":
            path = config.niivue_file()
            if path is None:
                return PlainTextResponse(f"// {NIIVUE_MISSING}\n", status_code=404, media_type="text/javascript")
            return FileResponse(path, media_type="text/javascript", headers={"Cache-Control": "max-age=86400"})
        if name in ("viewer.js", "viewer.css"):
            media = "text/javascript" if name.endswith(".js") else "text/css"
            return FileResponse(VIEWER_DIR / name, media_type=media, headers={"Cache-Control": "no-cache"})
        return Response(status_code=404)

    @app.get(f"{prefix}/files/{{token}}/{{name}}", include_in_schema=False)
    def user_file(token: str, name: str, request: Request):
        space = spaces.get(token)
        if space is None or not space.owned_by(request.cookies.get(COOKIE)):
            return Response(status_code=404)
        path = space.served_path(name)
        if path is None:
            return Response(status_code=404)
        cache = "no-store" if name == "state.json" else "private, max-age=3600"
        media = "application/json" if name == "state.json" else "application/octet-stream"
        return FileResponse(path, media_type=media, headers={"Cache-Control": cache})

    @app.get("/favicon.ico", include_in_schema=False)
    def favicon():
        return Response(status_code=204)

    if prefix:
        @app.get("/", include_in_schema=False)
        def to_prefix():
            return RedirectResponse(f"{prefix}/", status_code=307)

        @app.get(prefix, include_in_schema=False)
        def to_prefix_slash():
            return RedirectResponse(f"{prefix}/", status_code=307)

    app.add_middleware(ClientCookie)
    theme = gr.themes.Default(font=["ui-sans-serif", "system-ui", "sans-serif"],
                              font_mono=["ui-monospace", "SFMono-Regular", "Menlo", "monospace"])
    demo = ui.blocks()
    gr.mount_gradio_app(
        app, demo, path=prefix or "/", auth=config.auth,
        auth_message="radmesh: sign in to ask questions about CT studies." if config.auth else None,
        footer_links=[], run_history=False, allowed_paths=[str(workdir / "out")],
        blocked_paths=[str(workdir / "viewer")], show_error=True, max_file_size=config.max_upload,
        ssr_mode=False, mcp_server=False, theme=theme, css=CSS, pwa=False,
    )
    return app
