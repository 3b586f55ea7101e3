"""`radmesh batch`: a cohort on a real local Ray cluster (2 CPUs), in-process mesh, tiny phantoms.

One Ray cluster for the module; its workers keep their loaded model between tests. The run
of four studies covers a worker killed mid-run (retried by Ray, nothing lost) and a corrupt
study (fails alone, with its reason); the rerun submits nothing and touches no file.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from radmesh.batch import outputs
from radmesh.batch.cohort import LESION_COLUMNS, STRUCTURE_COLUMNS
from radmesh.batch.manifest import read_manifest
from radmesh.batch.run import KILL_ONCE_ENV, run_batch
from radmesh.batch.study import Settings
from radmesh.common.errors import InvalidInputError

PROMPT = "segment the tumors and measure them"
FAST = Settings(fast=True)  # 3 mm: seconds per study on these phantoms
KILLED = "p2"  # the study whose worker kills itself on its first attempt


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    """Three small phantoms (with and without lesions the fast model finds) and a truncated NIfTI."""
    from radmesh.phantom.generator import PhantomConfig, generate, write_phantom

    root = tmp_path_factory.mktemp("cohort")
    for seed in (1, 2, 3):
        ph = generate(seed, PhantomConfig(in_plane_size=96, spacing_xyz_mm=(3.5, 3.5, 4.0), slices=45,
                                          oblique=False, lesions=(26, 27, 28, 32)))
        write_phantom(ph, root / f"p{seed}")
    whole = (root / "p1" / "ct.nii.gz").read_bytes()
    (root / "corrupt.nii.gz").write_bytes(whole[: len(whole) // 3])  # an interrupted copy
    (root / "studies.csv").write_text("study_id,path\np1,p1/ct.nii.gz\np2,p2/ct.nii.gz\n"
                                      "corrupt,corrupt.nii.gz\np3,p3/ct.nii.gz\n")
    (root / "good.csv").write_text("study_id,path\np1,p1/ct.nii.gz\np2,p2/ct.nii.gz\np3,p3/ct.nii.gz\n")
    return root


@pytest.fixture(scope="module")
def ray_cluster(tmp_path_factory):
    """A real local Ray cluster of 2 CPUs; its workers inherit the kill-once hook (and only they)."""
    import ray

    marker = tmp_path_factory.mktemp("hook") / "killed"
    before = os.environ.get(KILL_ONCE_ENV)
    os.environ[KILL_ONCE_ENV] = f"{KILLED}:{marker}"
    try:
        ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    finally:
        os.environ.pop(KILL_ONCE_ENV) if before is None else os.environ.__setitem__(KILL_ONCE_ENV, before)
    yield {"marker": marker, "address": ray.get_runtime_context().gcs_address}
    ray.shutdown()


@pytest.fixture(scope="module")
def first_run(cohort, ray_cluster):
    out = cohort / "out"
    t0 = time.monotonic()
    result = run_batch(read_manifest(cohort / "studies.csv", PROMPT), out, FAST, progress=False, echo=lambda s: None)
    return out, result, time.monotonic() - t0


def _read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


# ---- the manifest (no Ray) ----------------------------------------------------------------

def test_manifest_problems_name_the_line(tmp_path):
    (tmp_path / "a.nii.gz").write_bytes(b"x")
    m = tmp_path / "m.csv"
    cases = {
        "id,file\nx,a.nii.gz\n": "line 1: no study_id or path column",
        "study_id,path\nx,a.nii.gz\nx,a.nii.gz\n": "line 3: study_id 'x' repeats line 2",
        "study_id,path\nx,missing.nii.gz\n": "line 2: study x: missing.nii.gz: no such file or folder",
        "study_id,path\n../up,a.nii.gz\n": "line 2: study_id '../up' is not a usable folder name",
        "study_id,path\n": "no studies",
        "": "empty",
    }
    for text, message in cases.items():
        m.write_text(text)
        with pytest.raises(InvalidInputError, match=message.replace("(", r"\(").replace(".", r"\.")):
            read_manifest(m, PROMPT)
    m.write_text("Study_ID,path,prompt\nx,a.nii.gz,\ny,a.nii.gz,segment the liver\n\n")
    with pytest.raises(InvalidInputError, match="line 2: study x: no prompt"):
        read_manifest(m)
    rows = read_manifest(m, PROMPT)  # a prompt cell overrides --prompt; paths are the manifest's
    assert [(r.study_id, r.prompt) for r in rows] == [("x", PROMPT), ("y", "segment the liver")]
    assert rows[0].path == str(tmp_path / "a.nii.gz")


def test_a_bad_manifest_is_one_line_and_exit_2(tmp_path):
    m = tmp_path / "m.csv"
    m.write_text("study_id,path\nx,nowhere.nii.gz\n")
    r = subprocess.run([sys.executable, "-m", "radmesh.cli", "batch", "--manifest", str(m), "--prompt", PROMPT,
                        "--out", str(tmp_path / "out")], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and r.stderr.count("\n") == 1, r.stderr
    assert "line 2: study x: nowhere.nii.gz: no such file or folder" in r.stderr
    assert not (tmp_path / "out").exists()  # refused before anything was made


# ---- the cohort on Ray --------------------------------------------------------------------

def test_a_cohort_runs_and_a_killed_worker_loses_nothing(first_run, ray_cluster):
    out, result, elapsed_s = first_run
    assert sorted(result.done) == ["p1", "p2", "p3"] and result.submitted == 4 and not result.not_run
    # the worker answering p2 was SIGKILLed on its first attempt; Ray ran the study again elsewhere
    marker = ray_cluster["marker"]
    assert marker.exists(), "the kill hook did not fire"
    with pytest.raises(ProcessLookupError):
        os.kill(int(marker.read_text()), 0)
    for sid in ("p1", "p2", "p3"):
        folder = out / "studies" / sid
        assert {"answer.json", "labels.nii.gz", "result.json"} <= {p.name for p in folder.iterdir()}
        r = json.loads((folder / "result.json").read_text())
        assert r["study_id"] == sid and r["prompt"] == PROMPT and r["status"] == "done" and r["fast"] is True
    # nothing half-written anywhere: no temporary folders or files
    assert not [p for p in out.rglob("*") if outputs.PARTIAL in p.name]
    assert sorted(p.name for p in (out / "studies").iterdir()) == ["p1", "p2", "p3"]
    print(f"4 studies in {elapsed_s:.1f} s")


def test_a_corrupt_study_fails_alone_with_its_reason(first_run):
    out, result, _ = first_run
    assert list(result.failed) == ["corrupt"] and "truncated or corrupt NIfTI" in result.failed["corrupt"]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["counts"] == {"studies": 4, "done": 3, "done_now": 3, "already_done": 0, "failed": 1,
                                 "not_run": 0}
    entry = next(s for s in summary["studies"] if s["study_id"] == "corrupt")
    assert entry["status"] == "failed" and "corrupt.nii.gz: truncated or corrupt NIfTI" in entry["reason"]
    assert not (out / "studies" / "corrupt").exists()


def test_the_cohort_tables_agree_with_each_other_and_the_studies(first_run):
    import pyarrow.parquet as pq

    out, _, _ = first_run
    expected_lesions, expected_structures = [], []
    for sid in ("p1", "p2", "p3"):  # manifest order (the corrupt one has no row)
        findings = json.loads((out / "studies" / sid / "answer.json").read_text())["findings"]
        for s in findings["structures"]:
            expected_structures.append((sid, s["class_index"], s["voxel_count"] > 0, s["volume_ml"], len(s["lesions"])))
            for lesion in s["lesions"]:
                expected_lesions.append((sid, s["class_index"], lesion["id"], lesion["location"], lesion["volume_ml"],
                                         lesion["long_axis_mm"], lesion["short_axis_mm"], lesion["max_diameter_mm"],
                                         lesion["hu_mean"]))
    # lesions in some studies, none in another (p2): both kinds of row are covered
    assert len(expected_lesions) >= 2 and {r[0] for r in expected_lesions} != {"p1", "p2", "p3"}
    for name, columns in (("lesions", LESION_COLUMNS), ("structures", STRUCTURE_COLUMNS)):
        table = pq.read_table(out / f"{name}.parquet")
        assert table.column_names == [c for c, _ in columns]
        from_parquet = table.to_pylist()
        from_csv = _read_csv(out / f"{name}.csv")
        assert len(from_csv) == len(from_parquet)
        for c, p in zip(from_csv, from_parquet):  # the same values, cell by cell
            for key, kind in columns:
                want = p[key]
                got = c[key]
                if want is None:
                    assert got == ""
                elif kind == "float64":
                    assert float(got) == want
                elif kind.startswith("int"):
                    assert int(got) == want
                elif kind == "bool_":
                    assert got == ("true" if want else "false")
                else:
                    assert got == want
    lesions = pq.read_table(out / "lesions.parquet").to_pylist()
    assert [(r["study_id"], r["class_index"], r["lesion_id"], r["location"], r["volume_ml"], r["long_axis_mm"],
             r["short_axis_mm"], r["max_diameter_mm"], r["hu_mean"]) for r in lesions] == expected_lesions
    structures = pq.read_table(out / "structures.parquet").to_pylist()
    assert [(r["study_id"], r["class_index"], r["found"], r["volume_ml"], r["lesion_count"])
            for r in structures] == expected_structures


def test_a_rerun_does_nothing_and_touches_nothing(first_run, cohort, ray_cluster):
    out, _, _ = first_run
    files = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file() and p.name != "summary.json"}
    rows = read_manifest(cohort / "good.csv", PROMPT)
    said: list[str] = []
    again = run_batch(rows, out, FAST, progress=False, echo=said.append)
    assert again.submitted == 0 and sorted(again.already_done) == ["p1", "p2", "p3"] and not again.failed
    assert said == [f"3 of 3 studies already done in {out}; nothing to run"]
    # from the shell, too (no Ray is started for nothing: this takes seconds)
    r = subprocess.run([sys.executable, "-m", "radmesh.cli", "batch", "--manifest", str(cohort / "good.csv"),
                        "--prompt", PROMPT, "--out", str(out), "--fast"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "3 of 3 studies done (3 already done)" in r.stdout and "nothing to run" in r.stderr
    assert {p: p.stat().st_mtime_ns for p in files} == files
    assert json.loads((out / "summary.json").read_text())["counts"]["already_done"] == 3
    # the same folder with another question is refused: one table, one question
    with pytest.raises(InvalidInputError, match="answers 'segment the tumors and measure them'"):
        run_batch(read_manifest(cohort / "good.csv", "segment the liver"), out, FAST, progress=False)


def test_the_shell_on_an_existing_cluster_retries_only_what_failed(first_run, cohort, ray_cluster):
    """`radmesh batch --ray-address` joins the running cluster; the done studies are skipped and the
    corrupt one fails again (a failed study is not done: it is tried on every run), exit 1."""
    out, _, _ = first_run
    r = subprocess.run([sys.executable, "-m", "radmesh.cli", "batch", "--manifest", str(cohort / "studies.csv"),
                        "--prompt", PROMPT, "--out", str(out), "--fast", "--ray-address", ray_cluster["address"],
                        "--no-progress"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 1, r.stderr
    assert "3 of 4 studies done (3 already done), 1 failed" in r.stdout
    assert "radmesh: study corrupt failed:" in r.stderr and "truncated or corrupt NIfTI" in r.stderr
    assert "Traceback" not in r.stderr


# ---- one study, without Ray ---------------------------------------------------------------

def test_transient_mesh_errors_are_retried_and_invalid_input_is_not(cohort, monkeypatch):
    """Against an --assistant-url: UNAVAILABLE is called again (after a pause), a refused study is not."""
    from radmesh.assistant.client import AskResult
    from radmesh.batch import study as study_mod
    from radmesh.common.errors import UnavailableError

    calls: list[str] = []
    answers = {"kind": "answer", "text": "ok", "session_id": "s", "findings": None, "segmented": []}

    def flaky(row, settings, question, ct):
        calls.append(row.study_id)
        if len(calls) < 3:
            raise UnavailableError("assistant service at h:1 is unavailable (connection refused)")
        return AskResult(dict(answers))

    monkeypatch.setattr(study_mod, "_ask_once", flaky)
    monkeypatch.setattr(study_mod.time, "sleep", lambda s: None)
    row = read_manifest(cohort / "good.csv", PROMPT)[0]
    remote = Settings(assistant_url="h:1", fast=True)
    o = study_mod.answer_study(row, remote)
    assert o.status == "done" and o.attempts == 3 and "answer.json" in o.files
    def down(row, settings, question, ct):
        calls.append(row.study_id)
        raise UnavailableError("assistant service at h:1 is unavailable")

    calls.clear()
    monkeypatch.setattr(study_mod, "_ask_once", down)
    o = study_mod.answer_study(row, remote)
    assert o.status == "failed" and o.attempts == 3 and len(calls) == 3 and "(after 3 attempts)" in o.reason

    def refused(row, settings, question, ct):
        calls.append(row.study_id)
        raise InvalidInputError("the CT is not a CT")

    calls.clear()
    monkeypatch.setattr(study_mod, "_ask_once", refused)
    o = study_mod.answer_study(row, remote)
    assert o.status == "failed" and calls == ["p1"] and o.reason == "the CT is not a CT"


# ---- last: it cancels tasks on the shared cluster ------------------------------------------

def test_ctrl_c_leaves_the_finished_studies_done(cohort, ray_cluster, tmp_path):
    import signal

    manifest = tmp_path / "six.csv"
    manifest.write_text("study_id,path\n" + "".join(f"s{i},{cohort}/p{1 + i % 3}/ct.nii.gz\n" for i in range(6)))
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-m", "radmesh.cli", "batch", "--manifest", str(manifest),
                             "--prompt", PROMPT, "--out", str(out), "--fast", "--no-progress",
                             "--ray-address", ray_cluster["address"]], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        deadline = time.monotonic() + 240
        while not list(out.glob("studies/*/result.json")) and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.2)
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, stdout + stderr
    assert "interrupted; the studies finished so far are done" in stderr and "Traceback" not in stderr
    summary = json.loads((out / "summary.json").read_text())
    done = {s["study_id"] for s in summary["studies"] if s["status"] == "done"}
    assert done and summary["counts"]["not_run"] == 6 - len(done) > 0
    # every folder there is complete; no half-written one
    assert {p.name for p in (out / "studies").iterdir()} == done
    assert all((out / "studies" / sid / "result.json").is_file() for sid in done)


def test_assistant_url_from_the_environment(monkeypatch):
    """The chart's Ray pods carry RADMESH_ASSISTANT_URL: a RayJob's studies then call the mesh."""
    from radmesh.cli import build_parser

    argv = ["batch", "--manifest", "m.csv", "--prompt", "segment the liver", "--out", "o"]
    assert build_parser().parse_args(argv).assistant_url is None
    monkeypatch.setenv("RADMESH_ASSISTANT_URL", "rm-radmesh-assistant:50051")
    assert build_parser().parse_args(argv).assistant_url == "rm-radmesh-assistant:50051"
