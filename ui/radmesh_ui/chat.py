"""The Gradio page: study loader, chat, findings table, key images, viewer, downloads.

Everything about a user lives in their ``gr.State`` (a small dict: the file token, the
assistant session id, the study handle, the chat history) and in their folders
(:mod:`radmesh_ui.userfiles`); this module keeps nothing per user. The events, with the
``api_name`` a Gradio client calls them by:

- ``/load_sample`` (sample name) and ``/upload_study`` (a .nii/.nii.gz file or a DICOM .zip):
  make it the study (the viewer shows it; the next question uploads it once);
- ``/ask`` (prompt, sample name): streams the chat as the plan runs, then the findings
  table, the key images, the downloads and the answer's details (``uploaded_bytes``, ...);
  without a study loaded it loads the chosen sample first;
- ``/new_conversation``: end the assistant session (the study stays loaded).

The CT is sent only when :func:`radmesh.assistant.client.needs_upload` says the assistant's
session does not hold it, so a follow-up question uploads nothing.
"""

from __future__ import annotations

import html
import json
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import gradio as gr
import numpy as np

from radmesh.assistant.client import AskResult, ask_stream, end_session_remote, needs_upload, study_handle
from radmesh.assistant.core import Question, Step
from radmesh.common.errors import RadmeshError, UnavailableError
from radmesh.common.imageio import read_ct_and_study, write_volume
from radmesh_ui import present
from radmesh_ui.userfiles import COOKIE, Spaces, UserSpace

if TYPE_CHECKING:
    from radmesh_ui.app import UIConfig

log = logging.getLogger("radmesh.ui")

FORMATS = ("seg", "sr", "nifti")
NIFTI_SUFFIXES = (".nii", ".nii.gz")

# The parent page tells the viewer iframe what changed (same origin; see viewer/viewer.js).
REFRESH_JS = """() => {
  const f = document.querySelector('#radmesh-viewer iframe');
  if (f && f.contentWindow) f.contentWindow.postMessage({type: 'radmesh-refresh'}, window.location.origin);
  return [];
}"""
JUMP_JS = """(v) => {
  const f = document.querySelector('#radmesh-viewer iframe');
  if (f && f.contentWindow && v) {
    const lps = String(v).split(',').map(Number);
    if (lps.length === 3 && lps.every(Number.isFinite))
      f.contentWindow.postMessage({type: 'radmesh-jump', lps: lps}, window.location.origin);
  }
  return [];
}"""

CSS = """
#radmesh-viewer iframe { width: 100%; height: 560px; border: 0; border-radius: 6px; background: #111; display: block; }
#radmesh-title h1 { margin-bottom: 0; }
footer { display: none !important; }
"""


@dataclass(frozen=True)
class Sample:
    name: str
    title: str
    description: str
    question: str
    ct: Path


def list_samples(folder: Path | None) -> list[Sample]:
    """Folders of ``folder`` with ``ct.nii.gz`` and ``sample.json``, sorted by folder name."""
    if folder is None or not Path(folder).is_dir():
        return []
    out = []
    for d in sorted(Path(folder).iterdir(), key=lambda p: p.name):
        ct, meta = d / "ct.nii.gz", d / "sample.json"
        if not (d.is_dir() and ct.is_file() and meta.is_file()):
            continue
        try:
            info = json.loads(meta.read_text())
        except (OSError, ValueError):
            info = {}
        out.append(Sample(d.name, str(info.get("title") or d.name), str(info.get("description") or ""),
                          str(info.get("question") or ""), ct))
    return out


def _cookie(request: gr.Request | None) -> str | None:
    if request is None:
        return None
    try:
        cookies = request.cookies
        value = cookies.get(COOKIE) if cookies else None
        if value:
            return str(value)
    except Exception:  # noqa: BLE001 - a request object without cookies
        pass
    try:
        raw = request.headers.get("cookie") or ""
    except Exception:  # noqa: BLE001
        return None
    for part in raw.split(";"):
        k, _, v = part.strip().partition("=")
        if k == COOKIE and v:
            return v
    return None


def _error_words(e: BaseException) -> str:
    text = " ".join(str(e).split())
    if isinstance(e, UnavailableError) and text.startswith("assistant service"):
        return f"The radmesh assistant is unavailable: {text}. Ask again once it is running."
    if isinstance(e, RadmeshError):
        return f"The assistant could not answer: {text}"
    return f"Something went wrong in the chat UI ({type(e).__name__}); the details are in the UI's log."


class ChatUI:
    """The page and its event handlers for one app (one config, one workdir)."""

    def __init__(self, config: "UIConfig", spaces: Spaces):
        self.config = config
        self.spaces = spaces
        self._sample_info: dict[tuple, dict[str, Any]] = {}  # per sample file: handle, grid (not per user)

    # ---- helpers ---------------------------------------------------------------------------
    @property
    def prefix(self) -> str:
        return self.config.prefix

    def samples(self) -> list[Sample]:
        return list_samples(self.config.samples_dir)

    def sample(self, name: str | None) -> Sample | None:
        samples = self.samples()
        for s in samples:
            if s.name == name or s.title == name:
                return s
        return None

    def viewer_html(self, token: str) -> str:
        src = html.escape(f"{self.prefix}/viewer/?t={token}", quote=True)
        return f'<iframe src="{src}" title="CT viewer" allow="fullscreen"></iframe>'

    def space(self, state: dict[str, Any], request: gr.Request | None) -> tuple[dict[str, Any], UserSpace]:
        """The user's folder (made on their first event); ``state`` gets its token."""
        state = dict(state or {})
        space = self.spaces.get(state.get("token", ""))
        if space is None:
            for old in self.spaces.idle(self.config.idle_ttl_s):
                self._remove(old)
            space = self.spaces.create(_cookie(request), getattr(request, "session_hash", None))
            state = {"token": space.token, "session_id": "", "study_handle": "", "study": None,
                     "messages": [], "turn": 0, "jumps": []}
        else:
            space.update_owner()
        return state, space

    def _end_session(self, session_id: str) -> None:
        """End the assistant's session (its study and files go); a failure is only logged."""
        if not session_id:
            return
        try:
            end_session_remote(self.config.assistant_url, session_id, timeout_s=5)
        except RadmeshError as e:
            log.info("could not end assistant session: %s", e)

    def _remove(self, space: UserSpace) -> None:
        self._end_session(space.owner().get("assistant_session") or "")
        space.remove()

    def end_user(self, state: dict[str, Any] | None) -> None:
        """A browser session ended: its assistant session and files go."""
        space = self.spaces.get((state or {}).get("token", ""))
        if space is not None:
            self._remove(space)

    def unload(self, request: gr.Request) -> None:
        for space in self.spaces.by_session_hash(getattr(request, "session_hash", "") or ""):
            self._remove(space)

    def close(self) -> None:
        for space in self.spaces.all():
            self._remove(space)

    # ---- loading a study ------------------------------------------------------------------
    def _study_info(self, path: Path, cache: bool) -> dict[str, Any]:
        st = path.stat()
        key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
        if cache and key in self._sample_info:
            return self._sample_info[key]
        ct, _, _ = read_ct_and_study(path)
        g = ct.geometry
        info = {"handle": study_handle(ct), "shape_zyx": list(g.shape_zyx),
                "spacing_xyz_mm": [float(v) for v in g.spacing_xyz_mm], "bytes": int(np.asarray(ct.array).nbytes)}
        if cache:
            if len(self._sample_info) > 64:
                self._sample_info.clear()
            self._sample_info[key] = info
        return info

    def _set_study(self, state: dict[str, Any], space: UserSpace, ct_file: Path, info: dict[str, Any],
                   title: str, description: str, kind: str) -> dict[str, Any]:
        self._end_session(state.get("session_id") or "")  # a new study starts a new conversation
        state.update(session_id="", study_handle=info["handle"], jumps=[],
                     study={"title": title, "description": description, "kind": kind, "ct": ct_file.name,
                            "shape_zyx": info["shape_zyx"], "spacing_xyz_mm": info["spacing_xyz_mm"],
                            "bytes": info["bytes"]})
        space.update_owner(assistant_session="")
        space.remove_viewer_files("labels")
        space.write_state(ct=ct_file.name, labels=None, legend=[], title=title)
        z, y, x = info["shape_zyx"]
        sx, sy, sz = info["spacing_xyz_mm"]
        state["messages"] = list(state.get("messages") or []) + [{
            "role": "assistant",
            "content": f"Study loaded: {title} ({x} × {y} × {z} voxels, {sx:.2f} × {sy:.2f} × {sz:.2f} mm). "
                       "Ask a question about it.",
        }]
        return state

    def study_markdown(self, state: dict[str, Any]) -> str:
        study = (state or {}).get("study")
        if not study:
            return "No study loaded: pick a sample or upload a CT (NIfTI .nii/.nii.gz or a DICOM .zip)."
        z, y, x = study["shape_zyx"]
        sx, sy, sz = study["spacing_xyz_mm"]
        text = (f"**{study['title']}** — {x} × {y} × {z} voxels, {sx:.2f} × {sy:.2f} × {sz:.2f} mm, "
                f"{present.human_bytes(study['bytes'])}")
        if study.get("description"):
            text += f"\n\n{study['description']}"
        return text

    def _load_sample(self, state: dict[str, Any], space: UserSpace, name: str | None) -> dict[str, Any]:
        sample = self.sample(name) or (self.samples() or [None])[0]
        if sample is None:
            raise RadmeshError("no sample studies are installed here; upload a CT instead")
        info = self._study_info(sample.ct, cache=True)
        ct_file = space.place_ct(sample.ct, info["handle"][:16])
        space.clear_study_facts()
        state = self._set_study(state, space, ct_file, info, sample.title, sample.description, "sample")
        state["sample"] = sample.name
        return state

    def _study_outputs(self, state: dict[str, Any], prompt: Any = None) -> tuple:
        return (state, self.viewer_html(state["token"]), self.study_markdown(state), state["messages"],
                self.empty_table(), [], None, {}, gr.update(choices=[], value=None),
                gr.update() if prompt is None else prompt)

    @staticmethod
    def empty_table():
        import pandas as pd

        return pd.DataFrame([], columns=present.TABLE_HEADERS)

    def on_load(self, state: dict[str, Any], sample_name: str | None, request: gr.Request):
        state, space = self.space(state, request)
        if not state.get("study") and self.samples():
            try:
                state = self._load_sample(state, space, sample_name)
            except RadmeshError as e:
                state["messages"] = state["messages"] + [{"role": "assistant", "content": _error_words(e)}]
        sample = self.sample(state.get("sample"))
        return self._study_outputs(state, gr.update(value=sample.question) if sample and sample.question else None)

    def load_sample(self, sample_name: str | None, state: dict[str, Any], request: gr.Request):
        state, space = self.space(state, request)
        try:
            state = self._load_sample(state, space, sample_name)
        except RadmeshError as e:
            state["messages"] = state["messages"] + [{"role": "assistant", "content": _error_words(e)}]
            return self._study_outputs(state)
        sample = self.sample(state.get("sample"))
        return self._study_outputs(state, sample.question if sample and sample.question else None)

    def upload_study(self, file: Any, state: dict[str, Any], request: gr.Request):
        state, space = self.space(state, request)
        path = Path(file if isinstance(file, str) else getattr(file, "name", "") or "")
        if not path.is_file():
            return self._study_outputs(state)
        try:
            if path.name.lower().endswith(NIFTI_SUFFIXES):
                ct_file = space.place_ct(path, "upload")
                info = self._study_info(ct_file, cache=False)
                ct_file = space.place_ct(ct_file, info["handle"][:16])
                space.clear_study_facts()
            else:  # DICOM (.zip of a series, or a single file): the viewer gets it as NIfTI
                ct, _, study = read_ct_and_study(path)
                tmp = space.viewer_dir / "ct-upload.nii.gz"
                write_volume(ct, tmp)
                del ct
                info = self._study_info(tmp, cache=False)
                ct_file = space.place_ct(tmp, info["handle"][:16])
                tmp.unlink(missing_ok=True)
                space.save_study_facts(study)
            state = self._set_study(state, space, ct_file, info, path.name, "", "upload")
            state["sample"] = None
        except RadmeshError as e:
            state["messages"] = state["messages"] + [
                {"role": "assistant", "content": f"That file cannot be used as a CT: {' '.join(str(e).split())}"}]
        return self._study_outputs(state)

    def new_conversation(self, state: dict[str, Any], request: gr.Request):
        state, space = self.space(state, request)
        self._end_session(state.get("session_id") or "")
        state.update(session_id="", messages=[], jumps=[])
        space.update_owner(assistant_session="")
        space.remove_viewer_files("labels")
        space.write_state(labels=None, legend=[])
        return self._study_outputs(state)

    # ---- asking ----------------------------------------------------------------------------
    def ask(self, prompt: str, sample_name: str | None, state: dict[str, Any], request: gr.Request) -> Iterator[tuple]:
        """Streams (chat, table, gallery, downloads, details, jump, state, prompt, viewer, study)."""
        prompt = (prompt or "").strip()
        state, space = self.space(state, request)
        keep = gr.update()

        def out(table=keep, gallery=keep, files=keep, details=keep, jump=keep, prompt_value=keep):
            return (state["messages"], table, gallery, files, details, jump, state, prompt_value,
                    self.viewer_html(state["token"]), self.study_markdown(state))

        if not prompt:
            yield out()
            return
        messages = list(state.get("messages") or [])
        state["messages"] = messages
        if not state.get("study"):
            try:
                state = self._load_sample(state, space, sample_name)
                messages = state["messages"]
            except RadmeshError as e:
                messages.append({"role": "assistant", "content": _error_words(e)})
                yield out(prompt_value="")
                return
        state["turn"] = turn = int(state.get("turn") or 0) + 1
        messages.append({"role": "user", "content": prompt})
        steps = present.StageLog(messages, turn)
        yield out(prompt_value="")

        result: AskResult | None = None
        t0 = time.perf_counter()
        try:
            sid, handle = state.get("session_id") or "", state["study_handle"]
            ct = None
            if needs_upload(self.config.assistant_url, sid, handle):
                ct_path = space.viewer_dir / state["study"]["ct"]
                steps.step("preparing", "running", f"reading the study ({present.human_bytes(ct_path.stat().st_size)})",
                           time.perf_counter() - t0)
                yield out()
                ct, _, _ = read_ct_and_study(ct_path)
                steps.step("preparing", "done", "read the study; it is sent once for this conversation",
                           time.perf_counter() - t0)
            question = Question(prompt=prompt, session_id=sid, study_handle=handle, formats=FORMATS,
                                figures=self.config.figures, study=space.study_facts())
            last = 0.0
            for item in ask_stream(self.config.assistant_url, question, ct):
                if isinstance(item, Step):
                    steps.step(item.stage, item.state, item.message, item.elapsed_s)
                    now = time.perf_counter()
                    if item.state != "running" or now - last > 0.25:
                        last = now
                        yield out()
                else:
                    result = item
            del ct
        except Exception as e:  # noqa: BLE001 - every failure becomes words in the chat
            if not isinstance(e, RadmeshError):
                log.exception("ask failed")
            steps.fail_running("error")
            messages.append({"role": "assistant", "content": _error_words(e)})
            yield out(details={"kind": "error", "error": " ".join(str(e).split()) if isinstance(e, RadmeshError)
                               else type(e).__name__})
            return
        if result is None:  # pragma: no cover - ask_stream raises instead
            return
        answer = result.answer
        state["session_id"] = answer.get("session_id") or state.get("session_id") or ""
        state["study_handle"] = answer.get("study_handle") or state["study_handle"]
        space.update_owner(assistant_session=state["session_id"])
        messages.append({"role": "assistant", "content": present.answer_message(answer)})

        findings = present.findings_table(answer, result.labels)
        import pandas as pd

        table = pd.DataFrame([f.row for f in findings], columns=present.TABLE_HEADERS)
        state["jumps"] = [present.jump_value(f.lps_mm) if f.lps_mm else "" for f in findings]
        choices = [(f.label, present.jump_value(f.lps_mm)) for f in findings if f.lps_mm]

        saved = space.save_outputs(turn, result.files)
        images = sorted((n for n in result.files if n.lower().endswith(".png")), key=present.figure_sort_key)
        gallery = [(str(saved[n]), present.figure_caption(n)) for n in images]
        downloads = [str(saved[n]) for n in present.download_names(result.files)] or None

        if result.labels is not None:
            name = f"labels-{turn}.nii.gz"
            write_volume(result.labels, space.viewer_dir / name)
            space.remove_viewer_files("labels", keep=name)
            classes = [int(c) for c in np.unique(np.asarray(result.labels.array)) if c]
            space.write_state(labels=name, legend=present.legend(classes), focus=present.focus(findings))
        elif answer.get("kind") == "answer":
            space.remove_viewer_files("labels")
            space.write_state(labels=None, legend=[], focus=None)
        info = present.details(answer, result.files)
        yield out(table=table, gallery=gallery, files=downloads, details=info,
                  jump=gr.update(choices=choices, value=None))

    def select_finding(self, state: dict[str, Any], evt: gr.SelectData):
        jumps = (state or {}).get("jumps") or []
        row = evt.index[0] if isinstance(evt.index, (list, tuple)) else evt.index
        value = jumps[row] if isinstance(row, int) and 0 <= row < len(jumps) else ""
        return gr.update(value=value or None)

    # ---- the page --------------------------------------------------------------------------
    def blocks(self) -> gr.Blocks:
        samples = self.samples()
        with gr.Blocks(title="radmesh", analytics_enabled=False, delete_cache=(3600, 6 * 3600)) as demo:
            state = gr.State({}, delete_callback=self.end_user)
            gr.Markdown("# radmesh\nAsk a CT scan a question in plain words. Draft results for review by a "
                        "radiologist; not for diagnostic use.", elem_id="radmesh-title")
            with gr.Row(equal_height=False):
                with gr.Column(scale=5, min_width=380):
                    with gr.Group():
                        with gr.Row():
                            sample = gr.Dropdown(choices=[(s.title, s.name) for s in samples],
                                                 value=samples[0].name if samples else None,
                                                 label="Sample study", interactive=True, scale=4,
                                                 elem_id="radmesh-sample", visible=bool(samples))
                            load_btn = gr.Button("Load sample", scale=1, min_width=110, elem_id="radmesh-load",
                                                 visible=bool(samples))
                        upload = gr.File(label="…or upload a CT: NIfTI (.nii, .nii.gz) or a DICOM series (.zip)",
                                         file_types=[".nii", ".gz", ".zip", ".dcm"], file_count="single",
                                         type="filepath", height=120, elem_id="radmesh-upload")
                        study_md = gr.Markdown(self.study_markdown({}), elem_id="radmesh-study", padding=True)
                    chatbot = gr.Chatbot(label="Chat", height=470, elem_id="radmesh-chat", buttons=[])
                    with gr.Row():
                        prompt = gr.Textbox(show_label=False, lines=1, max_lines=4, scale=5, elem_id="radmesh-prompt",
                                            placeholder="e.g. segment the tumor in the tail of the pancreas and "
                                                        "measure its size")
                        ask_btn = gr.Button("Ask", variant="primary", scale=1, min_width=80, elem_id="radmesh-ask")
                    new_btn = gr.Button("New conversation", size="sm", elem_id="radmesh-new")
                with gr.Column(scale=6, min_width=420):
                    viewer = gr.HTML("", elem_id="radmesh-viewer", label="Viewer")
                    jump = gr.Dropdown(choices=[], value=None, label="Jump to finding", interactive=True,
                                       elem_id="radmesh-jump")
            findings = gr.Dataframe(value=self.empty_table(), headers=present.TABLE_HEADERS,
                                    datatype=["str"] * len(present.TABLE_HEADERS), interactive=False,
                                    wrap=True, label="Findings (click a row to show it in the viewer)",
                                    elem_id="radmesh-findings")
            with gr.Row(equal_height=False):
                with gr.Column(scale=3):
                    gallery = gr.Gallery(label="Key images", columns=3, height=330, object_fit="contain",
                                         elem_id="radmesh-gallery")
                with gr.Column(scale=2):
                    downloads = gr.File(label="Downloads", file_count="multiple", interactive=False,
                                        elem_id="radmesh-downloads")
                    with gr.Accordion("Details", open=False):
                        details = gr.JSON(label="Answer details", elem_id="radmesh-details")

            study_outputs = [state, viewer, study_md, chatbot, findings, gallery, downloads, details, jump, prompt]
            demo.load(self.on_load, inputs=[state, sample], outputs=study_outputs, api_visibility="private",
                      ).then(fn=None, js=REFRESH_JS)
            load_btn.click(self.load_sample, inputs=[sample, state], outputs=study_outputs, api_name="load_sample",
                           ).then(fn=None, js=REFRESH_JS)
            sample.input(self.load_sample, inputs=[sample, state], outputs=study_outputs,
                         api_visibility="private").then(fn=None, js=REFRESH_JS)
            upload.upload(self.upload_study, inputs=[upload, state], outputs=study_outputs, api_name="upload_study",
                          ).then(fn=None, js=REFRESH_JS)
            ask_outputs = [chatbot, findings, gallery, downloads, details, jump, state, prompt, viewer, study_md]
            ask_event = gr.on([ask_btn.click, prompt.submit], self.ask, inputs=[prompt, sample, state],
                              outputs=ask_outputs, api_name="ask", concurrency_limit=self.config.concurrency)
            ask_event.then(fn=None, js=REFRESH_JS)
            new_btn.click(self.new_conversation, inputs=[state], outputs=study_outputs, api_name="new_conversation",
                          ).then(fn=None, js=REFRESH_JS)
            findings.select(self.select_finding, inputs=[state], outputs=[jump], api_visibility="private",
                            ).then(fn=None, inputs=[jump], js=JUMP_JS)
            jump.input(fn=None, inputs=[jump], js=JUMP_JS)
            demo.unload(self.unload)
        demo.queue(default_concurrency_limit=self.config.concurrency)
        return demo
