"""The chat UI (ui/radmesh_ui) as a real process, driven by gradio_client and headless Chromium.

The mesh behind every UI here is the ``product`` fixture: ``radmesh up`` with real Triton,
every service and its own UI on the bundled default sample. On that UI, gradio_client asks
the seed sentence (checked against the phantom's truth) and a browser does what a new user
does (the README's screenshot). The other browser tests start a UI of their own
(``python -m radmesh_ui`` under the path prefix /radmesh) on the same assistant, with a
small phantom as its sample so two users can be answered at once in reasonable time.
Screenshots go to $RADMESH_TEST_ARTIFACTS (default: a tmp folder).

Run: .venv/bin/python -m pytest -q tests/test_ui.py
"""

from __future__ import annotations

import base64
import io
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import parse_qs, urlparse

import numpy as np
import pytest
from conftest import free_port, start_service

REPO = Path(__file__).resolve().parents[1]
UI_ROOT = REPO / "ui"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--enable-unsafe-swiftshader", "--use-gl=angle", "--use-angle=swiftshader"]
TAIL_QUESTION = "segment the tumor in the tail of the pancreas and measure its size"
LIVER_QUESTION = "segment the liver and measure it"
SAMPLE = "pancreatic-tail-tumour"  # the default sample of radmesh.samples
SAMPLE_TITLE = "Phantom abdomen: pancreatic tail tumour"
SMALL, SMALL_TITLE = "small-phantom", "Small phantom abdomen"
PANCREAS_QUESTION = "segment the pancreatic tumor and measure its size"
PREFIX = "/radmesh"
ANSWER_TIMEOUT_MS = 600_000


# ---- processes -----------------------------------------------------------------------------

@dataclass
class UIProcess:
    url: str  # http://127.0.0.1:PORT/PREFIX/
    origin: str  # http://127.0.0.1:PORT
    proc: subprocess.Popen
    log_path: Path
    workdir: Path
    stdout_lines: list[str] = field(default_factory=list)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM, timeout_s: float = 30) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise


def ui_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    path = os.pathsep.join(p for p in (str(UI_ROOT), os.environ.get("PYTHONPATH", "")) if p)
    env = {k: v for k, v in os.environ.items() if not k.startswith("RADMESH_UI_")}
    return {**env, "PYTHONPATH": path, "PYTHONUNBUFFERED": "1", **(extra or {})}


def start_ui(tmp: Path, assistant_url: str, *args: str, env: dict[str, str] | None = None,
             prefix: str = "") -> UIProcess:
    """``python -m radmesh_ui`` on a free loopback port, once it printed its ready line."""
    port = free_port()
    workdir = tmp / f"ui-work-{port}"
    log_path = tmp / f"ui-{port}.log"
    cmd = [sys.executable, "-m", "radmesh_ui", "--assistant-url", assistant_url, "--host", "127.0.0.1",
           "--port", str(port), "--workdir", str(workdir), *args]
    if prefix:
        cmd += ["--root-path", prefix]
    log = open(log_path, "wb")
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=log, text=True, env=ui_env(env), cwd=str(tmp))
    log.close()
    lines: queue.Queue = queue.Queue()
    captured: list[str] = []

    def pump() -> None:
        for line in proc.stdout:
            captured.append(line.rstrip("\n"))
            lines.put(line.rstrip("\n"))
        lines.put(None)

    threading.Thread(target=pump, daemon=True).start()
    origin = f"http://127.0.0.1:{port}"
    url = f"{origin}{prefix}/"
    try:
        line = lines.get(timeout=120)
    except queue.Empty:
        line = None
    if line != f"ui ready at {url}":
        proc.kill()
        raise RuntimeError(f"the UI did not start (stdout {line!r}):\n{log_path.read_text(errors='replace')}")
    return UIProcess(url, origin, proc, log_path, workdir, captured)


@pytest.fixture(scope="session")
def assistant_url(product) -> str:
    """The assistant every UI under test talks to: the product's."""
    return product.assistant_url


@pytest.fixture(scope="session")
def samples_dir(tmp_path_factory) -> Path:
    """A samples folder with one small study, so the browser tests load and answer quickly: the
    default sample's phantom (seed 92, same lesions) on a 192 × 192 × 80 grid at 2 × 2 × 2.5 mm
    (on this grid its pancreatic tumour falls in the head)."""
    root = tmp_path_factory.mktemp("samples")
    folder = root / SMALL
    subprocess.run([sys.executable, "-m", "radmesh.cli", "phantom", "--seed", "92", "--size", "192",
                    "--spacing-mm", "2,2,2.5", "--slices", "80", "--no-oblique", "--lesions", "28,27,30",
                    "--quiet", "--out", str(folder)], check=True, capture_output=True, timeout=300)
    (folder / "sample.json").write_text(json.dumps({
        "title": SMALL_TITLE, "description": "A 192 × 192 × 80 synthetic CT (not a patient).",
        "question": PANCREAS_QUESTION}))
    return root


@pytest.fixture(scope="session")
def product_ui(product) -> SimpleNamespace:
    """The UI that ``radmesh up`` started (no path prefix), its files in WORKDIR/ui."""
    origin = product.ui_url.rstrip("/")
    return SimpleNamespace(url=product.ui_url, origin=origin, workdir=product.workdir / "ui")


@pytest.fixture(scope="session")
def second_study(tmp_path_factory) -> SimpleNamespace:
    """Another phantom (seed 3, 160 × 160 × 60), as NIfTI and as a .zip of DICOM CT slices."""
    from radmesh.common.imageio import read_volume
    from radmesh.dicom.write_ct import write_ct_series

    out = tmp_path_factory.mktemp("phantom3")
    subprocess.run([sys.executable, "-m", "radmesh.cli", "phantom", "--seed", "3", "--size", "160",
                    "--spacing-mm", "2.4,2.4,3", "--slices", "60", "--no-oblique", "--quiet", "--out", str(out)],
                   check=True, capture_output=True, timeout=300)
    series = out / "dicom"
    write_ct_series(read_volume(out / "ct.nii.gz"), series)
    zpath = out / "phantom3-dicom.zip"
    with zipfile.ZipFile(zpath, "w") as z:
        for f in sorted(series.iterdir()):
            z.write(f, f"series/{f.name}")
    return SimpleNamespace(nifti=out / "ct.nii.gz", dicom_zip=zpath)


@pytest.fixture(scope="session")
def ui(tmp_path_factory, assistant_url, samples_dir) -> UIProcess:
    """The UI under test, served under the path prefix /radmesh."""
    proc = start_ui(tmp_path_factory.mktemp("ui"), assistant_url, "--samples", str(samples_dir), prefix=PREFIX)
    yield proc
    assert proc.stop() == 0, proc.log()


@pytest.fixture(scope="session")
def shots(tmp_path_factory):
    """save(page_or_locator, name): a PNG in $RADMESH_TEST_ARTIFACTS (default: a tmp folder)."""
    dirs = [Path(os.environ.get("RADMESH_TEST_ARTIFACTS") or tmp_path_factory.mktemp("artifacts"))]
    for d in dirs:
        d.mkdir(parents=True, exist_ok=True)

    def save(target, name: str) -> list[Path]:
        kwargs = {"full_page": True} if hasattr(target, "goto") else {}
        data = target.screenshot(**kwargs)
        paths = []
        for d in dirs:
            (d / name).write_bytes(data)
            paths.append(d / name)
        return paths

    return save


@pytest.fixture(scope="session")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


# ---- page helpers ------------------------------------------------------------------------

@dataclass
class User:
    context: object
    page: object
    requests: list[str]
    errors: list[str]


def open_user(browser, url: str, **context_args) -> User:
    context = browser.new_context(viewport={"width": 1500, "height": 1300}, **context_args)
    page = context.new_page()
    user = User(context, page, [], [])
    page.on("request", lambda r: user.requests.append(r.url))
    page.on("pageerror", lambda e: user.errors.append(str(e)))
    page.goto(url)
    return user


def viewer_frame(page):
    page.wait_for_selector("#radmesh-viewer iframe", timeout=60_000)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        for f in page.frames:
            if "/viewer/" in f.url:
                return f
        page.wait_for_timeout(200)  # lets Playwright take in the frame's events (time.sleep would not)
    raise AssertionError("no viewer iframe")


def token_of(page) -> str:
    src = page.get_attribute("#radmesh-viewer iframe", "src")
    return parse_qs(urlparse(src).query)["t"][0]


def wait_viewer(page, condition: str, timeout_ms: int = 120_000):
    """Wait until ``condition`` (JS over ``v`` = window.radmeshViewer) holds in the viewer iframe."""
    frame = viewer_frame(page)
    frame.wait_for_function(f"() => {{ const v = window.radmeshViewer; return !!(v && v.ready && ({condition})); }}",
                            timeout=timeout_ms, polling=500)
    return frame


def ask(page, question: str) -> None:
    page.fill("#radmesh-prompt textarea", question)
    page.click("#radmesh-ask")


def wait_answer(page, version_before: int, timeout_ms: int = ANSWER_TIMEOUT_MS):
    """The answer is in once the viewer got a label map newer than ``version_before``."""
    return wait_viewer(page, f"v.state && v.state.labels && v.state.version > {version_before} && v.hasLabels()",
                       timeout_ms)


def table_rows(page) -> list[list[str]]:
    return page.evaluate("""() => {
        const rows = [...document.querySelectorAll('#radmesh-findings [role=row]')];
        return rows.map(r => [...r.querySelectorAll('[role=gridcell]')].map(c => c.innerText.trim()))
                   .filter(cells => cells.some(c => c));
    }""")


def click_row(page, index: int) -> None:
    rows = page.locator("#radmesh-findings [role=row]:has([role=gridcell])")
    rows.nth(index).locator("[role=gridcell]").first.click()


def canvas_pixels(frame) -> np.ndarray:
    """The viewer's WebGL canvas as an RGBA array (drawn and read in one task, crosshair hidden)."""
    from PIL import Image

    url = frame.evaluate("() => window.radmeshViewer.snapshot(false)")
    assert url.startswith("data:image/png;base64,"), url[:40]
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))).convert("RGBA"))


def viewer_state(page) -> dict:
    return viewer_frame(page).evaluate("() => window.radmeshViewer.state")


def chat_text(page) -> str:
    return page.inner_text("#radmesh-chat")


# ---- two users at once ---------------------------------------------------------------------

@pytest.fixture(scope="module")
def two_users(browser, ui, second_study, shots):
    """On the UI under test, user A picks the small sample and asks about its pancreatic tumour
    while user B uploads the second phantom as a DICOM .zip and asks about the liver."""
    a = open_user(browser, ui.url)
    b = open_user(browser, ui.url)
    # A: pick the sample from the dropdown, load it
    a.page.click("#radmesh-sample input")
    a.page.locator("[role=option]", has_text=SMALL_TITLE).first.click()
    a.page.click("#radmesh-load")
    wait_viewer(a.page, "v.hasCT()")
    # B: upload the DICOM series
    b.page.set_input_files("#radmesh-upload input[type=file]", str(second_study.dicom_zip))
    b.page.wait_for_function("() => document.querySelector('#radmesh-study').innerText.includes('phantom3-dicom.zip')",
                             timeout=120_000)
    wait_viewer(b.page, "v.hasCT() && v.state && v.state.title === 'phantom3-dicom.zip'")
    va, vb = viewer_state(a.page)["version"], viewer_state(b.page)["version"]
    ask(a.page, PANCREAS_QUESTION)
    ask(b.page, LIVER_QUESTION)
    t0 = time.monotonic()
    wait_answer(a.page, va)
    wait_answer(b.page, vb)
    a.page.wait_for_function("() => [...document.querySelectorAll('#radmesh-gallery img')]"
                             ".filter(i => i.complete && i.naturalWidth > 0).length >= 3", timeout=60_000)
    time.sleep(1.0)  # let the last renders settle before screenshots
    shots(a.page, "ui-user-a-answer.png")
    shots(b.page, "ui-user-b-answer.png")
    shots(a.page.locator("#radmesh-viewer iframe"), "ui-user-a-viewer.png")
    yield SimpleNamespace(a=a, b=b, answer_s=time.monotonic() - t0, token_a=token_of(a.page), token_b=token_of(b.page))
    for u in (a, b):
        try:
            u.context.close()
        except Exception:  # noqa: BLE001 - a test closed it already
            pass


def test_browser_answer_shows_steps_text_table_and_key_images(two_users):
    page = two_users.a.page
    text = chat_text(page)
    assert PANCREAS_QUESTION in text
    assert "segmented" in text and "structures" in text  # the segmentation step, closed
    assert "hypoattenuating" in text or "mm" in text  # the answer itself
    rows = table_rows(page)
    assert rows, "the findings table is empty"
    tumour = [r for r in rows if r[0].startswith("Pancreas Tumor")]
    assert tumour and tumour[0][1].startswith("pancreatic") and tumour[0][2] and "×" in tumour[0][3], rows
    assert any(r[0] == "Pancreas" and r[2] for r in rows), rows
    widths = page.evaluate("() => [...document.querySelectorAll('#radmesh-gallery img')].map(i => i.naturalWidth)")
    assert len(widths) >= 3 and all(w > 0 for w in widths), widths
    downloads = page.inner_text("#radmesh-downloads").replace("\n", "")  # Gradio breaks names before the suffix
    for name in ("labels.nii.gz", "seg.dcm", "sr.dcm", "report.txt", "report.json"):
        assert name in downloads
    assert not two_users.a.errors, two_users.a.errors


def test_viewer_draws_the_ct_with_the_label_overlay(two_users):
    page = two_users.a.page
    frame = viewer_frame(page)
    state = viewer_state(page)
    assert state["ct"].startswith("ct-") and state["labels"].startswith("labels-")
    assert {x["name"] for x in state["legend"]} >= {"Pancreas", "Pancreas Tumor"}
    legend = frame.inner_text("#legend")
    assert "Pancreas Tumor" in legend
    px = canvas_pixels(frame)
    rgb = px[..., :3].astype(int)
    lit = (rgb.max(axis=2) > 24).mean()
    coloured = ((rgb.max(axis=2) - rgb.min(axis=2)) > 40).sum()  # CT is grey; the overlay is not
    assert lit > 0.05, f"the viewer canvas is blank ({lit:.3f} of pixels lit)"
    assert coloured > 30, f"no label overlay on the canvas ({coloured} coloured pixels)"
    # the label opacity slider: at 0 the overlay goes
    frame.fill("#opacity", "0")
    frame.dispatch_event("#opacity", "input")
    no_overlay = canvas_pixels(frame)[..., :3].astype(int)
    assert ((no_overlay.max(axis=2) - no_overlay.min(axis=2)) > 40).sum() < coloured / 4
    frame.fill("#opacity", "0.5")
    frame.dispatch_event("#opacity", "input")
    # window presets change the picture
    frame.click("button[data-window='1500,-600']")
    lung = canvas_pixels(frame)
    assert np.abs(lung.astype(int) - px.astype(int)).mean() > 1.0
    frame.click("button[data-window='400,50']")


def test_clicking_a_finding_moves_the_viewer_crosshair(two_users, shots):
    page = two_users.a.page
    frame = viewer_frame(page)
    focus = viewer_state(page)["focus"]  # the largest lesion's centroid, LPS mm
    expected_ras = np.array([-focus[0], -focus[1], focus[2]])

    def crosshair():
        return np.array(frame.evaluate("() => window.radmeshViewer.crosshairRAS()"))

    rows = table_rows(page)
    organ = next(i for i, r in enumerate(rows) if r[0] == "Pancreas")
    tumour = next(i for i, r in enumerate(rows) if r[0].startswith("Pancreas Tumor"))
    click_row(page, organ)
    page.wait_for_timeout(300)
    deadline = time.monotonic() + 20
    while np.linalg.norm(crosshair() - expected_ras) < 3 and time.monotonic() < deadline:
        time.sleep(0.3)
    assert np.linalg.norm(crosshair() - expected_ras) >= 3, "clicking the organ row did not move the crosshair"
    click_row(page, tumour)
    deadline = time.monotonic() + 20
    while np.linalg.norm(crosshair() - expected_ras) > 3 and time.monotonic() < deadline:
        time.sleep(0.3)
    assert np.linalg.norm(crosshair() - expected_ras) <= 3, (crosshair(), expected_ras)
    # and the "jump to finding" dropdown does the same
    page.click("#radmesh-jump input")
    page.locator("[role=option]", has_text="Pancreas").first.click()
    deadline = time.monotonic() + 20
    while np.linalg.norm(crosshair() - expected_ras) < 3 and time.monotonic() < deadline:
        time.sleep(0.3)
    assert np.linalg.norm(crosshair() - expected_ras) >= 3
    shots(page, "ui-user-a-jump.png")


def test_two_users_get_separate_answers(two_users, ui):
    a, b = two_users.a.page, two_users.b.page
    sa, sb = viewer_state(a), viewer_state(b)
    assert two_users.token_a != two_users.token_b
    assert sa["ct"] != sb["ct"]  # named for each study's handle
    assert sb["title"] == "phantom3-dicom.zip"
    assert "Liver" in {x["name"] for x in sb["legend"]} and "Pancreas Tumor" not in {x["name"] for x in sb["legend"]}
    rows_b = table_rows(b)
    assert [r[0] for r in rows_b] == ["Liver"], rows_b
    text_b = chat_text(b)
    assert LIVER_QUESTION in text_b and PANCREAS_QUESTION not in text_b
    assert LIVER_QUESTION not in chat_text(a)
    owners = [json.loads((ui.workdir / "viewer" / t / "owner.json").read_text())
              for t in (two_users.token_a, two_users.token_b)]
    assert owners[0]["assistant_session"] and owners[1]["assistant_session"]
    assert owners[0]["assistant_session"] != owners[1]["assistant_session"]


def test_a_users_files_are_404_for_anyone_else(two_users, ui):
    import httpx

    state = viewer_state(two_users.a.page)
    for name in (state["ct"], state["labels"], "state.json"):
        url = f"{ui.origin}{PREFIX}/files/{two_users.token_a}/{name}"
        assert two_users.a.context.request.get(url).status == 200  # the owner
        assert two_users.b.context.request.get(url).status == 404  # another browser
        assert httpx.get(url).status_code == 404  # no cookie at all
    own_b = f"{ui.origin}{PREFIX}/files/{two_users.token_b}/state.json"
    assert two_users.b.context.request.get(own_b).status == 200
    for bad in ("owner.json", "study.json", "..%2fowner.json"):
        assert two_users.a.context.request.get(f"{ui.origin}{PREFIX}/files/{two_users.token_a}/{bad}").status == 404


def test_every_request_of_the_page_goes_to_the_ui_host(two_users, ui):
    for user in (two_users.a, two_users.b):
        assert user.requests
        elsewhere = [u for u in user.requests if not (u.startswith(ui.origin + "/") or u.startswith("data:")
                                                       or u.startswith("blob:"))]
        assert not elsewhere, elsewhere
        assert any("/viewer/niivue.umd.js" in u for u in user.requests)


def test_closing_the_tab_removes_the_users_files_and_ends_the_session(two_users, ui, assistant_url):
    from radmesh.assistant.client import get_session_remote

    folder = ui.workdir / "viewer" / two_users.token_b
    sid = json.loads((folder / "owner.json").read_text())["assistant_session"]
    assert get_session_remote(assistant_url, sid) is not None
    two_users.b.context.close()
    deadline = time.monotonic() + 60
    while folder.exists() and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not folder.exists(), "the user's files outlived their browser session"
    assert not (ui.workdir / "out" / two_users.token_b).exists()
    assert get_session_remote(assistant_url, sid) is None
    assert (ui.workdir / "viewer" / two_users.token_a).exists()  # the other user keeps theirs


def test_the_mission_in_a_browser_on_the_default_sample(browser, product_ui, shots):
    """What a new user does after ``radmesh up``: open the page (the default sample loads and its
    question is in the box), press Ask, watch the steps, see the tumour outlined and measured.
    The screenshot is the README's (docs/ui.png). The full-size CT takes minutes to reach a
    software-rendered WebGL canvas on two cores, hence the long waits."""
    user = open_user(browser, product_ui.url)
    page = user.page
    page.wait_for_function("() => (document.querySelector('#radmesh-chat') || {innerText: ''}).innerText"
                           ".includes('Study loaded')", timeout=300_000)
    assert page.input_value("#radmesh-prompt textarea") == TAIL_QUESTION
    version = wait_viewer(page, "v.hasCT()", timeout_ms=900_000).evaluate("() => window.radmeshViewer.state.version")
    page.click("#radmesh-ask")
    page.wait_for_function("() => document.querySelector('#radmesh-chat').innerText.includes('segmenting')",
                           timeout=300_000, polling=200)  # a step shows while it runs
    wait_answer(page, version, timeout_ms=900_000)
    page.wait_for_function("() => [...document.querySelectorAll('#radmesh-gallery img')]"
                           ".filter(i => i.complete && i.naturalWidth > 0).length >= 3", timeout=120_000)
    rows = table_rows(page)
    tumour = [r for r in rows if r[0].startswith("Pancreas Tumor")]
    assert len(tumour) == 1 and tumour[0][1] == "pancreatic tail", rows
    assert "pancreatic tail" in chat_text(page)
    px = canvas_pixels(viewer_frame(page))[..., :3].astype(int)
    assert (px.max(axis=2) > 24).mean() > 0.05, "the viewer canvas is blank"
    page.wait_for_timeout(1500)
    shots(page, "ui-default-sample-answer.png")
    assert not user.errors, user.errors
    user.context.close()


# ---- gradio_client ---------------------------------------------------------------------------

def test_gradio_client_seed_sentence_on_the_default_sample_then_a_follow_up(product):
    """The mission, through the product's own UI: the seed sentence on the bundled sample finds
    the pancreatic tail tumour and measures it close to the truth; "and the liver?" uploads nothing."""
    from gradio_client import Client
    from radmesh.common.imageio import read_volume
    from radmesh.measurement.core import measure

    sample = product.workdir / "samples" / SAMPLE
    truth = measure(read_volume(sample / "ct.nii.gz"), read_volume(sample / "labels.nii.gz"), classes=[28])
    truth_long_mm = truth.structures[0].lesions[0].long_axis_mm

    client = Client(product.ui_url, verbose=False)
    api = client.view_api(print_info=False, return_format="dict")["named_endpoints"]
    assert {"/load_sample", "/upload_study", "/ask", "/new_conversation"} <= set(api)
    loaded = client.predict(SAMPLE, api_name="/load_sample")
    assert "pancreatic tail tumour" in loaded[1]  # the study line
    question = json.loads((sample / "sample.json").read_text())["question"]
    assert question == TAIL_QUESTION
    out = client.predict(TAIL_QUESTION, SAMPLE, api_name="/ask")
    chat, table, gallery, files, details = out[:5]
    assert details["kind"] == "answer" and details["uploaded_bytes"] > 0, details
    assert table["headers"][:4] == ["Structure", "Location", "Volume (mL)", "Long × short axis (mm)"]
    tumours = [r for r in table["data"] if r[0].startswith("Pancreas Tumor")]
    assert len(tumours) == 1 and tumours[0][1] == "pancreatic tail", table
    long_mm = float(tumours[0][3].split("×")[0])
    assert abs(long_mm - truth_long_mm) <= 3.0, (long_mm, truth_long_mm)
    reply = chat[-1]
    assert reply["role"] == "assistant" and "pancreatic tail" in json.dumps(reply) and " mL" in json.dumps(reply)
    steps = [m for m in chat if m.get("metadata") and m["metadata"].get("title")]
    assert any("segmented" in m["metadata"]["title"] and m["metadata"].get("duration") for m in steps), steps
    assert all(m["metadata"]["status"] == "done" for m in steps)
    assert len(gallery) == 3  # axial, coronal, sagittal of the one lesion
    assert {Path(f).name for f in files} >= {"labels.nii.gz", "seg.dcm", "sr.dcm", "report.txt", "report.json"}

    out = client.predict("and the liver?", SAMPLE, api_name="/ask")
    chat, table, _gallery, _files, details2 = out[:5]
    assert details2["kind"] == "answer" and details2["uploaded_bytes"] == 0, details2
    assert details2["session_id"] == details["session_id"]
    assert [r[0] for r in table["data"]] == ["Liver"], table
    assert any("already segmented" in (m.get("metadata") or {}).get("title", "") for m in chat)


# ---- prefix, login, errors, start-up ----------------------------------------------------------

def test_root_path_serves_the_page_and_the_viewer_under_the_prefix(ui):
    import httpx

    page = httpx.get(ui.url)
    assert page.status_code == 200 and "gradio" in page.text.lower()
    viewer = httpx.get(f"{ui.origin}{PREFIX}/viewer/")
    assert viewer.status_code == 200 and "niivue.umd.js" in viewer.text and "NiiVue is not installed" not in viewer.text
    script = httpx.get(f"{ui.origin}{PREFIX}/viewer/niivue.umd.js")
    assert script.status_code == 200 and "Niivue" in script.text
    assert httpx.get(f"{ui.origin}{PREFIX}/viewer/viewer.js").status_code == 200
    root = httpx.get(f"{ui.origin}/", follow_redirects=False)
    assert root.status_code in (301, 302, 307, 308) and root.headers["location"] == f"{PREFIX}/"
    assert httpx.get(f"{ui.origin}/viewer/").status_code == 404
    config = httpx.get(f"{ui.url}config").json()
    assert config.get("root", "").rstrip("/").endswith(PREFIX)


def test_login_guards_the_page(tmp_path, browser, assistant_url, samples_dir, shots):
    auth = tmp_path / "auth.txt"
    auth.write_text("clinician:s3cret-pass\n")
    proc = start_ui(tmp_path, assistant_url, "--samples", str(samples_dir), "--auth-file", str(auth))
    try:
        user = open_user(browser, proc.url)
        page = user.page
        page.wait_for_selector("input[type=password]", timeout=30_000)
        assert page.locator("#radmesh-chat").count() == 0
        shots(page, "ui-login.png")
        page.locator("input[type=text], input:not([type])").first.fill("clinician")
        page.fill("input[type=password]", "wrong")
        page.keyboard.press("Enter")
        page.wait_for_timeout(1500)
        assert page.locator("#radmesh-chat").count() == 0
        page.locator("input[type=text], input:not([type])").first.fill("clinician")
        page.fill("input[type=password]", "s3cret-pass")
        page.keyboard.press("Enter")
        page.wait_for_selector("#radmesh-chat", timeout=30_000)
        page.wait_for_function("() => document.querySelector('#radmesh-chat').innerText.includes('Study loaded')",
                               timeout=60_000)
        wait_viewer(page, "v.hasCT()")
        shots(page, "ui-logged-in.png")
        user.context.close()

        from gradio_client import Client

        with pytest.raises(Exception):
            Client(proc.url, verbose=False)
        client = Client(proc.url, auth=("clinician", "s3cret-pass"), verbose=False)
        assert SMALL_TITLE in client.predict(SMALL, api_name="/load_sample")[1]
    finally:
        assert proc.stop(signal.SIGINT) == 0, proc.log()


def test_assistant_down_is_said_in_plain_words(tmp_path, browser, samples_dir, shots):
    closed = f"127.0.0.1:{free_port()}"
    proc = start_ui(tmp_path, closed, "--samples", str(samples_dir))
    try:
        user = open_user(browser, proc.url)
        page = user.page
        wait_viewer(page, "v.hasCT()")
        ask(page, TAIL_QUESTION)
        page.wait_for_function("() => document.querySelector('#radmesh-chat').innerText.includes('unavailable')",
                               timeout=60_000)
        text = chat_text(page)
        assert "The radmesh assistant is unavailable" in text and closed in text
        assert "Traceback" not in text and "Error(" not in text
        shots(page, "ui-assistant-down.png")
        user.context.close()
    finally:
        rc = proc.stop(signal.SIGTERM)
    assert rc == 0, proc.log()
    assert proc.stdout_lines == [f"ui ready at {proc.url}"]  # exactly one line on stdout
    assert "Traceback" not in proc.log()


def test_segmentation_dying_mid_answer_is_named_in_the_chat(tmp_path, browser, product, samples_dir, shots):
    """An assistant of its own whose segmentation service is SIGKILLed while it runs windows:
    the chat says which step failed, in words, and the page keeps working."""
    from radmesh.services import SERVICES

    def product_url(name: str) -> str:
        return f"127.0.0.1:{SERVICES[name].port + product.offset}"

    seg = start_service("segmentation", tmp_path, "--embedded", "--text-url", product_url("text"))
    asst = start_service("assistant", tmp_path, "--text-url", product_url("text"), "--segmentation-url", seg.target,
                         "--measurement-url", product_url("measurement"), "--report-url", product_url("report"))
    proc = start_ui(tmp_path, asst.target, "--samples", str(samples_dir))
    try:
        user = open_user(browser, proc.url)
        page = user.page
        wait_viewer(page, "v.hasCT()")
        ask(page, LIVER_QUESTION)
        page.wait_for_function("() => document.querySelector('#radmesh-chat').innerText.includes('window')",
                               timeout=300_000, polling=200)
        seg.proc.send_signal(signal.SIGKILL)
        page.wait_for_function("() => document.querySelector('#radmesh-chat').innerText.includes('could not answer')",
                               timeout=120_000)
        text = chat_text(page)
        assert "The assistant could not answer: segmenting:" in text and seg.target in text, text[-800:]
        assert "Traceback" not in text
        shots(page, "ui-segmentation-died.png")
        user.context.close()
    finally:
        seg.proc.kill()
        assert proc.stop() == 0, proc.log()
        asst.stop()


def test_public_host_without_login_is_refused(tmp_path):
    r = subprocess.run([sys.executable, "-m", "radmesh_ui", "--host", "0.0.0.0", "--port", str(free_port()),
                        "--workdir", str(tmp_path / "w")], capture_output=True, text=True, env=ui_env(), timeout=60)
    assert r.returncode == 2
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "login" in lines[0] and "0.0.0.0" in lines[0], r.stderr
    assert r.stdout == ""


def test_the_ui_imports_only_the_assistant_client():
    """The UI reaches the mesh through radmesh.assistant.client only: importing the app pulls
    no radmesh module beyond what that client itself imports, radmesh.common and radmesh.v1."""
    probe = ("import sys, json; import radmesh.assistant.client; base = set(sys.modules); "
             "import radmesh_ui.app, radmesh_ui.__main__; "
             "print(json.dumps({'base': sorted(m for m in base if m.startswith('radmesh')), "
             "'after': sorted(m for m in sys.modules if m.startswith('radmesh')), "
             "'heavy': [m for m in ('torch', 'monai', 'onnxruntime', 'SimpleITK') if m in sys.modules]}))")
    r = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=ui_env(), timeout=120)
    assert r.returncode == 0, r.stderr
    seen = json.loads(r.stdout.strip().splitlines()[-1])
    extra = [m for m in seen["after"] if m not in seen["base"] and not m.startswith("radmesh_ui")
             and not m.startswith(("radmesh.common", "radmesh.v1"))]
    assert not extra, f"the UI imports {extra} beyond radmesh.assistant.client, radmesh.common and radmesh.v1"
    for forbidden in ("radmesh.model", "radmesh.segmentation", "radmesh.text", "radmesh.triton"):
        assert not any(m == forbidden or m.startswith(forbidden + ".") for m in seen["after"]), forbidden
    assert "torch" not in seen["heavy"] and "monai" not in seen["heavy"]
    # and the UI's own source names nothing else of radmesh
    import ast

    for path in (UI_ROOT / "radmesh_ui").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module] if isinstance(node, ast.ImportFrom) and node.module else [])
            for name in names:
                if name.startswith("radmesh.") or name == "radmesh":
                    assert name in ("radmesh.assistant.client", "radmesh.assistant.core") or name.startswith(
                        ("radmesh.common", "radmesh.v1")), f"{path.name} imports {name}"


def test_viewer_page_says_when_niivue_is_missing(tmp_path, monkeypatch):
    import radmesh_ui.app as appmod
    from fastapi.testclient import TestClient

    monkeypatch.setattr(appmod, "NIIVUE_IN_TREE", tmp_path / "absent.js")
    monkeypatch.delenv("RADMESH_UI_NIIVUE", raising=False)
    app = appmod.build_app(appmod.UIConfig(assistant_url="127.0.0.1:1", workdir=tmp_path / "w"))
    with TestClient(app) as client:
        page = client.get("/viewer/")
        assert page.status_code == 200 and "NiiVue is not installed: run scripts/bootstrap.sh" in page.text
        assert client.get("/viewer/niivue.umd.js").status_code == 404
    app.state.close()


# ---- the presentation, without a server ----------------------------------------------------------

def test_stage_log_turns_steps_into_collapsible_messages():
    from radmesh_ui.present import StageLog

    messages: list[dict] = []
    log = StageLog(messages, turn=1)
    log.step("receiving", "running", "uploading 117 MB", 0.1)
    log.step("inference", "running", "segmenting Pancreas Tumor", 1.0)
    log.step("inference", "running", "segmenting Pancreas Tumor: window 12 / 40", 10.0)
    assert messages[1]["metadata"]["title"] == "segmenting Pancreas Tumor: window 12 / 40"
    assert messages[1]["metadata"]["status"] == "pending"
    log.step("inference", "running", "segmenting Pancreas Tumor: window 13 / 40", 11.0)
    assert messages[1]["content"].count("window") == 1  # progress replaces progress
    log.step("inference", "done", "segmented 16 structures in 45 s", 46.0)
    meta = messages[1]["metadata"]
    assert meta["status"] == "done" and meta["duration"] == 45.0
    log.step("measuring", "skipped", "Liver already measured", 46.5)
    assert messages[2]["metadata"]["log"] == "skipped" and "duration" not in messages[2]["metadata"]
    log.fail_running("error")
    assert messages[0]["metadata"]["status"] == "done" and messages[0]["metadata"]["log"] == "failed"


def test_findings_table_rows_and_captions():
    from radmesh_ui.present import answer_message, figure_caption, findings_table, focus

    answer = {"kind": "answer", "text": "An 18 × 13 mm mass.", "findings": {"structures": [
        {"class_index": 11, "name": "Pancreas", "kind": "organ", "volume_ml": 69.62, "hu_mean": 93.6, "lesions": []},
        {"class_index": 28, "name": "Pancreas Tumor", "kind": "lesion", "volume_ml": 2.49, "hu_mean": 68.7,
         "lesions": [{"id": 1, "volume_ml": 2.49, "max_diameter_mm": 27.73, "long_axis_mm": 17.89,
                      "short_axis_mm": 13.42, "centroid_mm": [-41.1, 9.1, 12.8], "location": "pancreatic head",
                      "attenuation": "hypoattenuating", "hu_mean": 68.67}]},
        {"class_index": 27, "name": "Liver Tumor", "kind": "lesion", "volume_ml": 0.0, "lesions": []}]}}
    rows = findings_table(answer)
    assert rows[0].row == ["Pancreas", "", "69.6", "", "", "94", ""]
    assert rows[1].row == ["Pancreas Tumor 1", "pancreatic head", "2.49", "17.9 × 13.4", "27.7", "69",
                           "hypoattenuating"]
    assert rows[2].row[:2] == ["Liver Tumor", "none found"]
    assert focus(rows) == [-41.1, 9.1, 12.8]
    assert figure_caption("pancreas_tumor-1-axial.png") == "Pancreas Tumor 1 · axial"
    assert figure_caption("28-2-coronal.png") == "Pancreas Tumor 2 · coronal"
    assert "Did you mean: Liver, Liver Tumor?" in answer_message(
        {"kind": "question", "text": "Which one?", "suggestions": [6, 27]})
