"""Per-user folders: the viewer's CT and label map, the downloads, who owns them.

Every browser session gets an unguessable token (``secrets.token_urlsafe``) and two folders:

- ``<workdir>/viewer/<token>/``: what the viewer page loads through ``<prefix>/files/<token>/NAME``
  (``ct-<id>.nii[.gz]``, ``labels-<n>.nii.gz``, ``state.json``), plus ``owner.json`` and
  ``study.json`` (study facts of a DICOM upload), which are never served;
- ``<workdir>/out/<token>/<turn>/``: the answer's files and key images, handed to Gradio
  (downloads, gallery).

A token's files are served only to the browser that owns it: the request must carry the
same ``radmesh_ui`` cookie (a random id set on the browser's first request) as the event
that created the token; anything else is 404. Nothing here is held in memory: a folder is
found again from its token, or from the Gradio session hash recorded in ``owner.json``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import re
import secrets
import shutil
import time
from pathlib import Path
from typing import Any

COOKIE = "radmesh_ui"
TOKEN_RE = re.compile(r"^[A-Za-z0-9_-]{24,64}$")
SERVED_RE = re.compile(r"^(?:(?:ct|labels)-[A-Za-z0-9]+\.nii(?:\.gz)?|state\.json)$")


def client_id(cookie: str | None) -> str:
    """What owner.json records for a browser: a hash of its cookie ("" without one)."""
    return hashlib.sha256(cookie.encode()).hexdigest() if cookie else ""


def _write_json(path: Path, data: Any) -> None:
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}")
    tmp.write_text(json.dumps(data, indent=1))
    os.replace(tmp, path)


def _encode(v: Any) -> Any:
    """JSON-able: bytes (also inside lists and dicts) as {"__b64__": ...}."""
    if isinstance(v, (bytes, bytearray)):
        return {"__b64__": base64.b64encode(bytes(v)).decode()}
    if isinstance(v, dict):
        return {str(k): _encode(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_encode(x) for x in v]
    return v


def _decode(v: Any) -> Any:
    if isinstance(v, dict):
        if set(v) == {"__b64__"}:
            return base64.b64decode(v["__b64__"])
        return {k: _decode(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_decode(x) for x in v]
    return v


class UserSpace:
    def __init__(self, root: Path, token: str):
        if not TOKEN_RE.match(token):
            raise ValueError("bad token")
        self.token = token
        self.viewer_dir = root / "viewer" / token
        self.out_dir = root / "out" / token

    # ---- ownership ------------------------------------------------------------------------
    @property
    def owner_file(self) -> Path:
        return self.viewer_dir / "owner.json"

    def exists(self) -> bool:
        return self.owner_file.is_file()

    def owner(self) -> dict[str, Any]:
        try:
            return json.loads(self.owner_file.read_text())
        except (OSError, ValueError):
            return {}

    def update_owner(self, **fields: Any) -> None:
        data = {**self.owner(), **fields, "touched": time.time()}
        _write_json(self.owner_file, data)

    def owned_by(self, cookie: str | None) -> bool:
        recorded = self.owner().get("client") or ""
        return bool(recorded) and bool(cookie) and hmac.compare_digest(recorded, client_id(cookie))

    # ---- the viewer's files ---------------------------------------------------------------
    def served_path(self, name: str) -> Path | None:
        if not SERVED_RE.match(name):
            return None
        p = self.viewer_dir / name
        return p if p.is_file() else None

    def state(self) -> dict[str, Any]:
        try:
            return json.loads((self.viewer_dir / "state.json").read_text())
        except (OSError, ValueError):
            return {"version": 0, "ct": None, "labels": None, "legend": []}

    def write_state(self, **fields: Any) -> dict[str, Any]:
        data = {**self.state(), **fields}
        data["version"] = int(data.get("version") or 0) + 1
        _write_json(self.viewer_dir / "state.json", data)
        return data

    def remove_viewer_files(self, prefix: str, keep: str | None = None) -> None:
        for p in self.viewer_dir.glob(f"{prefix}-*"):
            if p.name != keep:
                p.unlink(missing_ok=True)

    def place_ct(self, source: Path, file_id: str) -> Path:
        """A link (or copy) of ``source`` as the viewer's CT, named for the study."""
        suffix = ".nii.gz" if source.name.endswith(".nii.gz") else ".nii"
        target = self.viewer_dir / f"ct-{file_id}{suffix}"
        if not target.exists():
            tmp = target.with_name(f".{target.name}.{secrets.token_hex(4)}")
            try:
                os.link(source, tmp)
            except OSError:
                shutil.copyfile(source, tmp)
            os.replace(tmp, target)
        self.remove_viewer_files("ct", keep=target.name)
        return target

    def save_study_facts(self, study: dict[str, Any]) -> None:
        """DICOM study facts (bytes as base64) for later questions' AskOptions.study."""
        _write_json(self.viewer_dir / "study.json", _encode(study))

    def study_facts(self) -> dict[str, Any]:
        try:
            plain = json.loads((self.viewer_dir / "study.json").read_text())
        except (OSError, ValueError):
            return {}
        return _decode(plain)

    def clear_study_facts(self) -> None:
        (self.viewer_dir / "study.json").unlink(missing_ok=True)

    # ---- an answer's files ----------------------------------------------------------------
    def save_outputs(self, turn: int, files: dict[str, bytes]) -> dict[str, Path]:
        folder = self.out_dir / str(turn)
        folder.mkdir(parents=True, exist_ok=True)
        out = {}
        for name, data in files.items():
            safe = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(name).name) or "file"
            (folder / safe).write_bytes(data)
            out[name] = folder / safe
        # earlier turns' files: Gradio has its own copies by now
        for old in self.out_dir.iterdir():
            if old.is_dir() and old.name != str(turn):
                shutil.rmtree(old, ignore_errors=True)
        return out

    def remove(self) -> None:
        shutil.rmtree(self.viewer_dir, ignore_errors=True)
        shutil.rmtree(self.out_dir, ignore_errors=True)


class Spaces:
    """The per-user folders under one workdir."""

    def __init__(self, workdir: Path):
        self.root = Path(workdir)
        (self.root / "viewer").mkdir(parents=True, exist_ok=True)
        (self.root / "out").mkdir(parents=True, exist_ok=True)

    def create(self, cookie: str | None, session_hash: str | None) -> UserSpace:
        space = UserSpace(self.root, secrets.token_urlsafe(24))
        space.viewer_dir.mkdir(parents=True)
        space.out_dir.mkdir(parents=True)
        space.update_owner(client=client_id(cookie), session_hash=session_hash or "", assistant_session="",
                           created=time.time())
        return space

    def get(self, token: str) -> UserSpace | None:
        if not token or not TOKEN_RE.match(token):
            return None
        space = UserSpace(self.root, token)
        return space if space.exists() else None

    def all(self) -> list[UserSpace]:
        out = []
        for d in (self.root / "viewer").iterdir():
            if d.is_dir() and TOKEN_RE.match(d.name) and (d / "owner.json").is_file():
                out.append(UserSpace(self.root, d.name))
        return out

    def by_session_hash(self, session_hash: str) -> list[UserSpace]:
        return [s for s in self.all() if session_hash and s.owner().get("session_hash") == session_hash]

    def idle(self, idle_s: float) -> list[UserSpace]:
        now = time.time()
        return [s for s in self.all() if now - float(s.owner().get("touched") or 0) > idle_s]
