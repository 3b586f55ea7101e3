"""The assistant: the conversation's rules, and `radmesh serve assistant` as a real process in
front of real text, segmentation, measurement and report services on loopback."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
import urllib.request

import grpc
import numpy as np
import pytest

from conftest import start_service
from radmesh.assistant.client import (AskResult, ask_remote, ask_requests, ask_stream, end_session_remote,
                                      get_session_remote, read_events, study_handle)
from radmesh.assistant.conversation import plan_turn
from radmesh.assistant.core import Question, Step
from radmesh.assistant.sessions import SessionStore, TurnRecord
from radmesh.common import vocabulary as V
from radmesh.common.errors import FailedPreconditionError, UnavailableError
from radmesh.common.imageio import read_volume
from radmesh.v1 import assistant_pb2_grpc

VALIDATED = (1, 2, 3, 4, 6, 7, 8, 9, 11, 16, 17, 26, 27, 28, 30, 32)


def T(c: int, sub: str = "", side: str = "") -> dict:
    return {"class_index": c, "name": V.get(c).name, "laterality": side, "subregion": sub}


def intent(targets=(), actions=("segment",), **extra) -> dict:
    return {"targets": list(targets), "actions": list(actions), "if_any": False, "unsupported": False,
            "unsupported_phrase": "", "suggestions": [], "refers_back": False, "refers_back_plural": False, **extra}


def answered(*targets, actions=("segment", "measure")) -> TurnRecord:
    return TurnRecord("earlier", "answer", list(targets), list(actions))


# ---- the rules (no services) ----------------------------------------------------------------

def test_out_of_vocabulary_is_a_refusal_with_what_radmesh_can_do():
    p = plan_turn("segment the brain tumor", intent((), (), unsupported=True, unsupported_phrase="brain tumor",
                                                    suggestions=[{"class_index": 27}, {"class_index": 31}]),
                  [], VALIDATED, "m-7")
    assert p.kind == "refusal" and "brain tumor" in p.text and "pancreas tumor" in p.text
    assert p.suggestions == [27]  # the nearest validated ones (colon tumour is not validated)


def test_a_class_the_model_is_not_validated_on_is_refused_and_named():
    p = plan_turn("segment the colon", intent([T(V.COLON)]), [], VALIDATED, "m-7")
    assert p.kind == "refusal" and "not validated on the colon" in p.text and "m-7" in p.text
    # mixed: the validated one is done, the other named in a note
    p = plan_turn("where is the tumour?", intent([T(26), T(27), T(28), T(29), T(30), T(31)], ("locate",)),
                  [], VALIDATED, "m-7")
    assert p.kind == "answer" and [t["class_index"] for t in p.targets] == [26, 27, 28, 30]
    assert "hepatic vessel tumor and colon tumor" in p.notes[0]


def test_it_resolves_to_the_last_findings_and_an_ambiguous_it_is_a_question():
    one = [answered(T(28, "tail"))]
    p = plan_turn("how big is it?", intent((), ("measure",), refers_back=True), one, VALIDATED, "m")
    assert p.kind == "answer" and p.targets == [T(28, "tail")] and p.actions == ["measure"]
    two = [answered(T(6), T(1))]
    p = plan_turn("how big is it?", intent((), ("measure",), refers_back=True), two, VALIDATED, "m")
    assert p.kind == "question" and p.text == "Which do you mean: the liver or the spleen?"
    assert p.suggestions == [6, 1]
    # "them" takes both; the answer to the question takes the question's action
    p = plan_turn("measure them", intent((), ("measure",), refers_back=True, refers_back_plural=True), two,
                  VALIDATED, "m")
    assert [t["class_index"] for t in p.targets] == [6, 1]
    asked = [*two, TurnRecord("how big is it?", "question", [], ["measure"])]
    p = plan_turn("the liver", intent([T(6)]), asked, VALIDATED, "m")
    assert p.targets == [T(6)] and p.actions == ["measure"]
    # nothing to refer to yet
    p = plan_turn("measure it", intent((), ("measure",), refers_back=True), [], VALIDATED, "m")
    assert p.kind == "question" and "Nothing has been asked" in p.text


def test_follow_ons_compare_and_report_take_the_conversation_into_account():
    before = [answered(T(28, "tail"))]
    p = plan_turn("and the liver?", intent([T(6)]), before, VALIDATED, "m")
    assert p.targets == [T(6)] and p.actions == ["segment", "measure"]
    p = plan_turn("segment the liver", intent([T(6)]), before, VALIDATED, "m")
    assert p.actions == ["segment"]  # a new request, not a follow-on
    p = plan_turn("compare with the spleen", intent([T(1)], ("compare",)), before, VALIDATED, "m")
    assert p.targets == [T(1)] and p.compare_with == [T(28, "tail")]
    assert p.actions == ["segment", "measure", "compare"]
    p = plan_turn("compare with the spleen", intent([T(1)], ("compare",)), [], VALIDATED, "m")
    assert p.kind == "question" and "with what" in p.text
    p = plan_turn("now write the report", intent((), ("report",)), [*before, answered(T(6))], VALIDATED, "m")
    assert p.targets == [T(28, "tail"), T(6)] and p.actions == ["report"]
    assert plan_turn("write the report", intent((), ("report",)), [], VALIDATED, "m").kind == "question"


def test_sessions_expire_and_take_their_files_with_them(tmp_path):
    store = SessionStore(tmp_path / "sessions", idle_s=0.3, reap_every_s=0.1)
    s = store.create()
    from radmesh.common.volume import Geometry, Volume

    ct = Volume(np.zeros((4, 5, 6), np.int16), Geometry((4, 5, 6), (1.0, 1.0, 1.0), (0.0, 0.0, 0.0)))
    s.set_study("ab" * 32, ct, {}, 240)
    assert list(s.folder.iterdir())
    assert store.get(s.id) is s
    deadline = time.monotonic() + 5
    while store.peek(s.id) is not None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert store.peek(s.id) is None and not s.folder.exists()
    assert list((tmp_path / "sessions").iterdir()) == []
    store.close()


def test_a_structure_the_scan_cuts_is_said_to_be_cut(tmp_path):
    """A partial scan (a thin slab here): the session finds the structures that reach its ends, and the
    reply says their volumes and sizes are lower bounds instead of reporting them as whole."""
    from radmesh.assistant import reply
    from radmesh.assistant.conversation import TurnPlan
    from radmesh.common.volume import Geometry, Volume

    store = SessionStore(tmp_path / "sessions", idle_s=60)
    s = store.create()
    g = Geometry((6, 30, 30), (2.0, 2.0, 5.0), (0.0, 0.0, 0.0))
    s.set_study("cd" * 32, Volume(np.zeros(g.shape_zyx, np.int16), g), {}, 10)
    lab = np.zeros(g.shape_zyx, np.uint8)
    lab[:, 5:25, 5:20] = V.LIVER     # through the whole slab
    lab[2:4, 8:12, 22:26] = V.SPLEEN  # inside it
    s.study.store_labels(Volume(lab, g))
    assert s.study.edges == {V.LIVER: ("superior", "inferior")}
    plan = TurnPlan(kind="answer", targets=[{"class_index": V.LIVER}, {"class_index": V.SPLEEN}], actions=["segment"])
    counts = {c: (n, n * g.voxel_volume_mm3 / 1000) for c, n in s.study.counts.items()}
    text = reply.compose(plan, {}, {}, counts, lambda k: k + 1, edges=s.study.edges)
    assert "the liver reaches the superior and inferior edges of the scan" in text and "lower bound" in text
    assert text.count("lower bound") == 1  # the spleen is whole
    lesion = {"long_axis_slice": 0, "long_axis_mm": 20.0, "short_axis_mm": 10.0, "max_diameter_mm": 21.0,
              "volume_ml": 1.5, "location": "right lobe", "subregion": "right lobe", "attenuation": "hypoattenuating",
              "hu_mean": 40.0, "host_hu_mean": 100.0, "host_class_index": V.LIVER, "laterality": "",
              "scan_edges": ["superior"]}
    plan = TurnPlan(kind="answer", targets=[{"class_index": V.LIVER_TUMOR, "subregion": "", "laterality": ""}],
                    actions=["segment", "measure"])
    text = reply.compose(plan, {}, {V.LIVER_TUMOR: {"lesions": [lesion]}}, {V.LIVER_TUMOR: (30, 1.5)}, lambda k: k + 1)
    assert "It reaches the superior edge of the scan and continues outside it" in text
    store.close()


# ---- the served assistant ---------------------------------------------------------------

@pytest.fixture(scope="module")
def case(tmp_path_factory):
    from radmesh.phantom.generator import PhantomConfig, generate, write_phantom

    phantom = generate(5, PhantomConfig(in_plane_size=112, spacing_xyz_mm=(3.2, 3.2, 4.0), slices=56,
                                        oblique=False, lesions=(V.LIVER_TUMOR,)))
    return phantom, write_phantom(phantom, tmp_path_factory.mktemp("asst-case"))


@pytest.fixture(scope="module")
def mesh(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("asst")
    text = start_service("text", tmp)
    seg = start_service("segmentation", tmp, "--embedded", "--text-url", text.target, "--drain-s", "2")
    meas = start_service("measurement", tmp)
    rep = start_service("report", tmp)
    sessions = tmp / "sessions"
    asst = start_service("assistant", tmp, "--text-url", text.target, "--segmentation-url", seg.target,
                         "--measurement-url", meas.target, "--report-url", rep.target,
                         "--session-dir", str(sessions), "--session-idle-s", "600")
    yield {"text": text, "segmentation": seg, "measurement": meas, "report": rep, "assistant": asst,
           "sessions": sessions}
    for svc in (asst, rep, meas, seg, text):
        if svc.proc.poll() is None:
            svc.stop()


def _metric(port: int, name: str) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        for line in r.read().decode().splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
    return 0.0


def test_a_conversation_uploads_once_and_segments_once(mesh, case):
    phantom, paths = case
    target = mesh["assistant"].target
    ct = read_volume(paths["ct"])
    first = ask_remote(target, Question("segment the liver and measure it", fast=True, formats=("nifti",)), ct)
    a = first.answer
    assert a["kind"] == "answer" and a["session_id"] and a["study_handle"] == study_handle(ct)
    assert a["uploaded_bytes"] == ct.array.astype(np.int16).nbytes
    assert [s["class_index"] for s in a["segmented"]] == [V.LIVER]
    liver_ml = a["segmented"][0]["volume_ml"]
    assert liver_ml > 100 and f"Liver: {round(liver_ml)} mL" in a["text"]
    assert a["findings"]["structures"][0]["class_index"] == V.LIVER
    # the label map holds only what the answer is about, on the CT's grid; the NIfTI is the same map
    assert set(np.unique(first.labels.array)) <= {0, V.LIVER}
    ct.geometry.require_match(first.labels.geometry)
    assert "labels.nii.gz" in first.files
    stages = [(s.stage, s.state) for s in first.steps]
    assert stages[0] == ("parsing", "running")
    assert ("receiving", "done") in stages and ("inference", "done") in stages and ("measuring", "done") in stages

    received = _metric(mesh["assistant"].metrics_port, "radmesh_assistant_upload_bytes_total")
    sid = a["session_id"]
    follow = ask_remote(target, Question("what about the spleen?", session_id=sid, study_handle=a["study_handle"]))
    b = follow.answer
    assert b["session_id"] == sid and b["uploaded_bytes"] == 0
    assert _metric(mesh["assistant"].metrics_port, "radmesh_assistant_upload_bytes_total") == received
    assert [s["class_index"] for s in b["segmented"]] == [V.SPLEEN]
    assert ("inference", "skipped") in [(s.stage, s.state) for s in follow.steps]
    assert "mean attenuation" in b["text"]  # "what about" carried the earlier "measure"

    c = ask_remote(target, Question("how big is it?", session_id=sid)).answer
    assert c["kind"] == "answer" and [t["class_index"] for t in c["targets"]] == [V.SPLEEN]
    d = ask_remote(target, Question("compare with the liver", session_id=sid)).answer
    assert "times the volume" in d["text"]
    e = ask_remote(target, Question("how big is it?", session_id=sid)).answer
    assert e["kind"] == "question" and e["suggestions"] == [V.LIVER, V.SPLEEN]
    f = ask_remote(target, Question("segment the brain tumor", session_id=sid)).answer
    assert f["kind"] == "refusal" and "brain tumor" in f["text"] and f["suggestions"]
    g = ask_remote(target, Question("segment the colon", session_id=sid)).answer
    assert g["kind"] == "refusal" and "not validated" in g["text"]

    report = ask_remote(target, Question("now write the report", session_id=sid, formats=("seg", "sr")))
    assert report.answer["report"]["text"].startswith("") and "FINDINGS" in report.answer["report"]["text"]
    assert {"report.txt", "report.json", "seg.dcm", "sr.dcm"} <= set(report.files)
    info = get_session_remote(target, sid)
    assert info["study_handle"] == a["study_handle"] and len(info["turns"]) == 8
    assert [t["kind"] for t in info["turns"]][-4:] == ["ANSWER_KIND_QUESTION", "ANSWER_KIND_REFUSAL",
                                                      "ANSWER_KIND_REFUSAL", "ANSWER_KIND_ANSWER"]
    folder = mesh["sessions"] / sid
    assert folder.is_dir() and any(folder.iterdir())
    assert end_session_remote(target, sid) and not folder.exists()
    assert get_session_remote(target, sid) is None
    with pytest.raises(FailedPreconditionError, match="unknown or expired"):
        ask_remote(target, Question("and the liver?", session_id=sid))


def test_the_first_event_comes_before_the_upload_ends(mesh, case):
    """The client holds back its CT until the first event arrives: it can only arrive first."""
    _, paths = case
    ct = read_volume(paths["ct"])
    got_first = threading.Event()
    requests = ask_requests(Question("segment the spleen", fast=True), ct)

    def gated():
        yield next(requests)  # the options
        assert got_first.wait(10), "no event within 10 s of the options"
        yield from requests

    with grpc.insecure_channel(mesh["assistant"].target) as ch:
        events = assistant_pb2_grpc.AssistantServiceStub(ch).Ask(gated(), timeout=600)
        t0 = time.perf_counter()
        first = next(events)
        latency = time.perf_counter() - t0
        got_first.set()
        assert first.WhichOneof("event") == "progress" and first.progress.message == "parsing the question"
        items = list(read_events(events))
    assert isinstance(items[-1], AskResult) and items[-1].answer["kind"] == "answer"
    print(f"first event after {latency * 1000:.0f} ms")


def test_bad_requests_get_clear_status_codes(mesh, case):
    target = mesh["assistant"].target
    with pytest.raises(Exception, match="prompt is empty"):
        ask_remote(target, Question("   "))
    with pytest.raises(FailedPreconditionError, match="no study in this session"):
        ask_remote(target, Question("segment the liver"))
    with pytest.raises(FailedPreconditionError, match="unknown or expired"):
        ask_remote(target, Question("segment the liver", session_id="nope"))


def test_a_service_that_dies_mid_request_is_named_with_its_step(mesh, case, tmp_path):
    """A segmentation service of its own, SIGKILLed while it runs windows: the answer names the step."""
    _, paths = case
    seg = start_service("segmentation", tmp_path, "--embedded", "--text-url", mesh["text"].target)
    asst = start_service("assistant", tmp_path, "--text-url", mesh["text"].target, "--segmentation-url", seg.target,
                         "--measurement-url", mesh["measurement"].target, "--report-url", mesh["report"].target)
    try:
        steps = []
        with pytest.raises(UnavailableError) as err:
            for item in ask_stream(asst.target, Question("segment the liver"), read_volume(paths["ct"])):
                if isinstance(item, Step):
                    steps.append(item)
                    if item.stage == "inference" and item.total and seg.proc.poll() is None:
                        seg.proc.send_signal(signal.SIGKILL)
        assert str(err.value).startswith("segmenting: ") and "segmentation service at" in str(err.value)
        assert steps[-1].state == "failed" and steps[-1].stage == "inference"
        # the assistant itself is fine: a refusal still answers
        a = ask_remote(asst.target, Question("segment the brain tumor"), read_volume(paths["ct"])).answer
        assert a["kind"] == "refusal"
    finally:
        asst.stop()
        seg.proc.kill()


def test_ask_from_the_shell_in_process_and_through_the_server(mesh, case, tmp_path):
    _, paths = case
    cmd = [sys.executable, "-m", "radmesh.cli", "ask", "--ct", str(paths["ct"]), "--fast", "--quiet"]
    local = subprocess.run([*cmd, "segment the liver and measure it", "--out", str(tmp_path / "local"), "--json"],
                           capture_output=True, text=True, timeout=600)
    assert local.returncode == 0, local.stderr
    answer = json.loads(local.stdout)
    assert answer["kind"] == "answer" and answer["segmented"][0]["class_index"] == V.LIVER
    assert {"labels.nii.gz", "answer.json"} <= {p.name for p in (tmp_path / "local").iterdir()}

    served = subprocess.run([*cmd, "segment the liver and measure it", "--server", mesh["assistant"].target],
                            capture_output=True, text=True, timeout=600)
    assert served.returncode == 0, served.stderr
    sid = served.stdout.split("session ")[1].split()[0]
    assert "Liver:" in served.stdout
    again = subprocess.run([sys.executable, "-m", "radmesh.cli", "ask", "--server", mesh["assistant"].target,
                            "--session", sid, "how big is it?", "--json"], capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr
    follow = json.loads(again.stdout)
    assert follow["uploaded_bytes"] == 0 and follow["targets"][0]["class_index"] == V.LIVER
    # the served and in-process answers agree on the volume
    assert follow["segmented"][0]["volume_ml"] == pytest.approx(answer["segmented"][0]["volume_ml"])
    bad = subprocess.run([sys.executable, "-m", "radmesh.cli", "ask", "--session", sid, "and the liver?"],
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "give --server" in bad.stderr
