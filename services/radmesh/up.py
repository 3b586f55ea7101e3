"""``radmesh up``: the whole mesh on one machine, as processes, on its defaults.

Starts Triton (the ``tritonserver`` of the nvidia-pytriton wheel, on the shipped
weights), then every service of ``services.SERVICES`` with ``radmesh serve NAME``, waits
for each to report SERVING on grpc.health.v1, answers the sample study (a
phantom generated from a fixed seed, so every machine gets the same one) through
the running services, then keeps the mesh up until Ctrl-C or SIGTERM and drains
every process on the way out. Logs go to WORKDIR/logs/NAME.log.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

from radmesh.common.errors import UnavailableError
from radmesh.common.grpcclient import wait_serving
from radmesh.services import SERVICES
from radmesh.triton.launcher import TritonProcess

HEALTH_TIMEOUT_S = 60.0


def _start(name: str, logs: Path) -> subprocess.Popen:
    info = SERVICES[name]
    log_file = open(logs / f"{name}.log", "ab")  # noqa: SIM115 - owned by the child for its lifetime
    cmd = [sys.executable, "-m", "radmesh.cli", "serve", name, "--host", "127.0.0.1",
           "--port", str(info.port), "--metrics-port", str(info.metrics_port)]
    return subprocess.Popen(cmd, stdout=log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)


def _stop(procs: dict[str, subprocess.Popen]) -> None:
    for p in procs.values():
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)  # drain, like Kubernetes does
    for name, p in procs.items():
        try:
            p.wait(timeout=30)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def _sample(workdir: Path, seed: int) -> Path:
    from radmesh.phantom.generator import generate, write_phantom

    folder = workdir / f"sample-seed{seed}"
    if not (folder / "truth.json").exists():
        print(f"generating the sample study (phantom seed {seed}) in {folder} ...", flush=True)
        write_phantom(generate(seed, progress=True), folder)
    return folder


DEMO_QUESTION = "segment the pancreatic tumor and measure it"


def _demo(folder: Path, workdir: Path) -> None:
    """The sample study through the running mesh: Parse → Segment → Measure → Generate.

    The segmentation runs in ``fast`` mode (3 mm) so the demo answers in about a minute on
    a laptop CPU; the report and its DICOM SEG, DICOM SR and NIfTI go to WORKDIR/demo.
    """
    from radmesh.common.imageio import read_volume
    from radmesh.measurement.client import measure_remote
    from radmesh.measurement.summary import format_text
    from radmesh.report.artifacts import parse_formats, report_files, write_report_folder
    from radmesh.report.client import generate_remote
    from radmesh.report.command import classes_to_measure
    from radmesh.segmentation.client import list_classes_remote, segment_remote
    from radmesh.text.client import parse_remote

    address = {name: f"127.0.0.1:{info.port}" for name, info in SERVICES.items()}
    intent = parse_remote(address["text"], DEMO_QUESTION)
    understood = ", ".join(t["name"] + (f" ({t['subregion']})" if t["subregion"] else "") for t in intent["targets"])
    print(f'\n"{DEMO_QUESTION}" → text service at {address["text"]}: {understood}; '
          f"actions {', '.join(intent['actions'])}", flush=True)

    ct = read_volume(folder / "ct.nii.gz")
    print(f"\nsegmenting {folder / 'ct.nii.gz'} through the segmentation service at {address['segmentation']} "
          f"(Triton, fast mode) ...", flush=True)
    labels, summary = segment_remote(address["segmentation"], ct, prompt=DEMO_QUESTION, fast=True)
    for row in summary["classes"]:
        print(f"  {row['name']}: {row['volume_ml']:.1f} mL ({row['voxel_count']} voxels)", flush=True)

    print(f"\nmeasuring through the measurement service at {address['measurement']}:\n", flush=True)
    # what the label map holds (the host organ the segmentation added, too) and what was asked for
    findings = measure_remote(address["measurement"], ct, labels, classes=classes_to_measure(labels.array, intent))
    print(format_text(findings), flush=True)

    formats = parse_formats(None)
    if not labels.array.any():
        # A DICOM SEG needs at least one segment (and the SR references the SEG): with
        # nothing found, the report says so and only the NIfTI label map is written.
        formats = parse_formats("nifti")
        print("nothing was found, so no DICOM SEG or SR is written (a SEG needs at least one segment)", flush=True)
    validated = [int(c["class_index"]) for c in list_classes_remote(address["segmentation"])["classes"]]
    report, artifacts = generate_remote(address["report"], findings, intent, model=summary.get("model"),
                                        validated_classes=validated, labels=labels, formats=formats)
    out = workdir / "demo"
    write_report_folder(out, {**report_files(text=report.text, json_text=report.json), **artifacts})
    print(f"\ndraft report from the report service at {address['report']} "
          f"(files in {out}: {', '.join(sorted(p.name for p in out.iterdir()))}):\n", flush=True)
    print(report.text, flush=True)


def up(workdir: str | os.PathLike = ".radmesh", exit_after_demo: bool = False, seed: int = 0) -> int:
    workdir = Path(workdir)
    logs = workdir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    procs: dict[str, subprocess.Popen] = {}
    triton = TritonProcess(log_path=logs / "triton.log")
    try:
        # Triton first: the segmentation service sends its windows there.
        triton.start()
        print(f"{'triton':<12} serving on {triton.grpc_url}   metrics http://127.0.0.1:{triton.metrics_port}/metrics",
              flush=True)
        for name, info in SERVICES.items():
            procs[name] = _start(name, logs)
            target = f"127.0.0.1:{info.port}"
            try:
                wait_serving(target, HEALTH_TIMEOUT_S)
            except UnavailableError:
                if procs[name].poll() is not None:
                    tail = (logs / f"{name}.log").read_text(errors="replace").strip().splitlines()[-3:]
                    raise UnavailableError(f"{name} service exited at start: {' | '.join(tail)}") from None
                raise
            print(f"{name:<12} serving on {target}   metrics http://127.0.0.1:{info.metrics_port}/metrics",
                  flush=True)
        _demo(_sample(workdir, seed), workdir)
        if exit_after_demo:
            return 0
        print("\nradmesh is up. Ctrl-C stops every service.", flush=True)
        while not stop.wait(1.0):
            for name, p in procs.items():
                if p.poll() is not None:
                    raise UnavailableError(f"{name} service stopped unexpectedly (exit {p.returncode}); "
                                           f"see {logs / (name + '.log')}")
            if not triton.running:
                raise UnavailableError(f"Triton stopped unexpectedly (exit {triton.returncode}); "
                                       f"see {logs / 'triton.log'}")
        return 0
    finally:
        _stop(procs)
        triton.stop()
