#!/usr/bin/env python
"""Benchmark: a clinician's question through the served product against the same conversation
in one process, in one run.

Served: the mesh of ``radmesh up`` without the UI (the wheel's tritonserver on the shipped
weights, then text, segmentation, measurement, report and the assistant, each its own
process on loopback, on ports moved by ``--port-offset``), asked through
:func:`radmesh.assistant.client.ask_stream`. In-process: :func:`radmesh.assistant.command.ask_local`
over a :class:`~radmesh.assistant.mesh.LocalMesh` (ONNX Runtime, the same weights), which is
what ``radmesh ask --embedded`` runs. Both from a CT in memory, with the UI's request (DICOM
SEG, SR, label map and key images).

CT: the bundled default sample (phantom seed 92, 512 × 512 × 223 at 0.78 × 0.78 × 0.8 mm,
a pancreatic tail tumour), or with ``--size`` a smaller phantom of the same seed and lesions.

Measured, served and in-process, one after the other (served first; the in-process model is
loaded before timing, as a running service's is):

1. time to the first event (target: well under a second, and before any segmentation);
2. the seed sentence answered in full ("segment the tumor in the tail of the pancreas and
   measure its size"; target < 60 s on the default sample), with the CT's upload;
3. the follow-up "and the liver?" in the same session: bytes uploaded (target 0) and its
   time against the first answer's (target < 1/3).

    python bench/bench_assistant.py                              # the recorded run
    python bench/bench_assistant.py --size 96 --slices 40 --spacing-mm 4,4,5   # a smoke run
"""

from __future__ import annotations

import argparse
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from radmesh.common import vocabulary as vocab

QUESTION = "segment the tumor in the tail of the pancreas and measure its size"
FOLLOW_UP = "and the liver?"
FORMATS = ("seg", "sr", "nifti")


def load_ct(args: argparse.Namespace, tmp: Path):
    from radmesh.common.imageio import read_volume
    from radmesh.samples import DEFAULT_SAMPLE, ensure_sample

    if args.size is None:
        folder = ensure_sample(DEFAULT_SAMPLE, tmp / "samples")
        return read_volume(folder / "ct.nii.gz"), "default sample (seed 92, 512 × 512 × 223, 0.78 × 0.78 × 0.8 mm)"
    from radmesh.phantom.generator import PhantomConfig, generate

    spacing = tuple(float(v) for v in args.spacing_mm.split(","))
    phantom = generate(92, PhantomConfig(in_plane_size=args.size, spacing_xyz_mm=spacing, slices=args.slices,
                                         oblique=False, lesions=(vocab.PANCREAS_TUMOR, vocab.LIVER_TUMOR,
                                                                 vocab.LUNG_TUMOR)))
    return phantom.ct, f"phantom seed 92, {args.size}² × {args.slices} at {args.spacing_mm} mm"


class Timeline:
    """Wall times of one answer: first event, the end, what went up."""

    def __init__(self):
        self.t0 = time.perf_counter()
        self.first_s: float | None = None

    def step(self, _step) -> None:
        if self.first_s is None:
            self.first_s = time.perf_counter() - self.t0

    def done(self) -> float:
        return time.perf_counter() - self.t0


def summary(result) -> str:
    lesions = [(s["name"], lesion) for s in (result.answer.get("findings") or {}).get("structures", [])
               for lesion in s.get("lesions") or []]
    if not lesions:
        return "no lesion found"
    name, lesion = lesions[0]
    return (f"{name}: {lesion.get('location')}, {lesion.get('long_axis_mm', 0):.1f} × "
            f"{lesion.get('short_axis_mm', 0):.1f} mm, {lesion.get('volume_ml', 0):.2f} mL")


def conversation(ask_one, ct) -> dict:
    """The seed sentence with the CT, then the follow-up in its session without it; ``ask_one(question,
    ct, clock)`` answers one question, reporting each step to ``clock.step``."""
    from radmesh.assistant.core import Question

    out: dict = {}
    session = ""
    for label, prompt, volume in (("first", QUESTION, ct), ("follow-up", FOLLOW_UP, None)):
        question = Question(prompt, session_id=session, formats=FORMATS, figures=True)
        if volume is None:
            question = replace(question, study_handle=out["first"]["result"].answer["study_handle"])
        clock = Timeline()
        result = ask_one(question, volume, clock)
        out[label] = {"first_event_s": clock.first_s, "total_s": clock.done(), "result": result}
        session = result.answer["session_id"]
    return out


def served(args: argparse.Namespace, ct, tmp: Path) -> dict:
    from radmesh.assistant.client import AskResult, ask_stream
    from radmesh.up import Ports, Product, start_mesh

    ports = Ports(offset=args.port_offset)
    ports.check_free()
    product = Product(tmp / "served", ports)
    try:
        start_mesh(product)
        target = ports.address("assistant")

        def ask_one(question, volume, clock):
            for item in ask_stream(target, question, volume):
                if isinstance(item, AskResult):
                    return item
                clock.step(item)
            raise RuntimeError("the assistant ended the stream without an answer")

        return conversation(ask_one, ct)
    finally:
        product.stop()


def in_process(args: argparse.Namespace, ct) -> dict:
    from radmesh.assistant.command import ask_local
    from radmesh.assistant.mesh import LocalMesh
    from radmesh.assistant.sessions import SessionStore

    mesh, store = LocalMesh(), SessionStore()
    try:
        mesh.model()  # load the model before timing, as a running service has it loaded
        return conversation(lambda question, volume, clock: ask_local(mesh, store, question, volume, clock.step), ct)
    finally:
        mesh.close()
        store.close()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--size", type=int, help="in-plane size of a smaller phantom (default: the default sample)")
    p.add_argument("--slices", type=int, default=40)
    p.add_argument("--spacing-mm", default="4,4,5")
    p.add_argument("--port-offset", type=int, default=4700, help="move the served mesh's ports by N")
    args = p.parse_args()

    with tempfile.TemporaryDirectory(prefix="radmesh-bench-assistant-") as d:
        tmp = Path(d)
        ct, what = load_ct(args, tmp)
        print(f"CT: {what}; {ct.array.nbytes / 1e6:.0f} MB")
        runs = {"served": served(args, ct, tmp), "in-process": in_process(args, ct)}
    for name, run in runs.items():
        first, follow = run["first"], run["follow-up"]
        up = first["result"].answer.get("uploaded_bytes", 0)
        print(f"{name}:")
        print(f"  first event: {first['first_event_s'] * 1000:.0f} ms")
        print(f"  first answer: {first['total_s']:.1f} s (uploaded {up / 1e6:.0f} MB); {summary(first['result'])}")
        print(f"    {first['result'].answer.get('text', '')}")
        print(f"  follow-up {FOLLOW_UP!r}: {follow['total_s']:.2f} s, first event "
              f"{follow['first_event_s'] * 1000:.0f} ms, uploaded {follow['result'].answer.get('uploaded_bytes', 0)} "
              f"bytes; follow-up / first = {follow['total_s'] / first['total_s']:.3f}")
    s, i = runs["served"]["first"]["total_s"], runs["in-process"]["first"]["total_s"]
    print(f"served / in-process, first answer: {s:.1f} s / {i:.1f} s = {s / i:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
