"""``radmesh ask``: the assistant's conversation from the shell.

    radmesh ask --ct CT "segment the tumor in the tail of the pancreas and measure its size"
    radmesh ask --ct CT "..." --server 127.0.0.1:50051 --out answer1      # through a running assistant
    radmesh ask --server 127.0.0.1:50051 --session ID "and the liver?"    # continue a conversation

Without ``--server`` (or with ``--embedded``) every service runs in this process and the
session ends with the command. With ``--server`` the session lives on the assistant: the
command prints its id, and a later ``--session ID`` continues it without sending the CT
again (when ``--ct`` names the study the session already holds, it is not re-sent either).
Steps go to stderr as they run; the reply (or ``--json``: the whole answer) to stdout;
``--out DIR`` writes the files (label map, report, DICOM SEG/SR, key images) and
``answer.json``, the folder complete or not at all.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from radmesh.common.errors import InvalidInputError

# which progress events reach stderr: every state change, and a window count every tenth
_WINDOW_STEPS = 10


def add_arguments(p: Any) -> None:
    p.add_argument("prompt", help='the question, e.g. "segment the pancreatic tumor and measure it"')
    p.add_argument("--ct", help="CT: NIfTI file, DICOM folder or .zip of slices, or one DICOM file "
                                "(not needed to continue a --session)")
    p.add_argument("--server", help="HOST:PORT of a running assistant (default: everything in this process)")
    p.add_argument("--embedded", action="store_true", help="run every service in this process (the default "
                                                           "without --server)")
    p.add_argument("--session", help="continue this session of the --server assistant (its id was printed)")
    p.add_argument("--out", help="folder for the files: labels.nii.gz, report.txt/json, seg.dcm, sr.dcm, "
                                 "key images, answer.json")
    p.add_argument("--formats", help="files besides the answer, from seg,sr,nifti (default: none; --out always "
                                     "writes the label map; seg and sr also draft the report)")
    p.add_argument("--no-figures", action="store_true", help="no key images of the lesions in --out")
    p.add_argument("--fast", action="store_true", help="segment at 3 mm instead of 1.5 mm (faster, coarser)")
    p.add_argument("--weights", help="model weights, in-process only (default: the shipped reference weights)")
    p.add_argument("--json", action="store_true", help="print the whole answer as JSON")
    p.add_argument("--quiet", action="store_true", help="no steps on stderr")
    p.add_argument("--timeout-s", type=float, default=1800.0, help="deadline of the remote call, s")


class _StepPrinter:
    def __init__(self, quiet: bool):
        self.quiet = quiet

    def __call__(self, step: Any) -> None:
        if self.quiet:
            return
        if step.stage == "inference" and step.state == "running" and step.total:
            every = max(1, step.total // _WINDOW_STEPS)
            if step.done % every and step.done != step.total:
                return
        print(f"[{step.elapsed_s:6.1f} s] {step.state:<7} {step.message}", file=sys.stderr, flush=True)


def _question(args: Any, study: dict[str, Any]):
    from radmesh.assistant.core import Question
    from radmesh.report.artifacts import parse_formats

    formats = parse_formats(args.formats if args.formats is not None else "")
    return Question(prompt=args.prompt, session_id=args.session or "", formats=formats, fast=args.fast,
                    figures=bool(args.out) and not args.no_figures, study=study)


def ask_local(mesh: Any, store: Any, question: Any, ct: Any, on_step: Any = None):
    """One question answered in this process by an :class:`~radmesh.assistant.core.Assistant`
    over ``mesh`` (a LocalMesh) and ``store``; both outlive the call, so a later question with
    the answer's session id is a follow-up. Returns an :class:`~radmesh.assistant.client.AskResult`."""
    from radmesh.assistant.client import AskResult, study_handle
    from radmesh.assistant.core import Assistant, File, Incoming, LabelMap, Reply, Step
    from radmesh.common.transport import wire_array

    def receive():
        if ct is None:
            return None
        yield from ()
        return Incoming(ct, study_handle(ct), int(wire_array(ct.array).nbytes))

    result = AskResult({})
    for event in Assistant(mesh, store).ask(question, receive):
        if isinstance(event, Step):
            result.steps.append(event)
            if on_step is not None:
                on_step(event)
        elif isinstance(event, LabelMap):
            result.labels = event.labels
        elif isinstance(event, File):
            result.files[event.name] = event.data
        elif isinstance(event, Reply):
            result.answer = event.answer
    return result


def _run_local(args: Any, question: Any, ct: Any, printer: _StepPrinter):
    from radmesh.assistant.mesh import LocalMesh
    from radmesh.assistant.sessions import SessionStore

    store, mesh = SessionStore(), LocalMesh(args.weights)
    try:
        return ask_local(mesh, store, question, ct, printer)
    finally:
        mesh.close()
        store.close()


def _run_remote(args: Any, question: Any, ct: Any, printer: _StepPrinter):
    from dataclasses import replace

    from radmesh.assistant.client import AskResult, ask_stream, needs_upload, study_handle

    if ct is not None and question.session_id:
        handle = study_handle(ct)
        if not needs_upload(args.server, question.session_id, handle):
            ct = None  # the session holds this study: ask without sending it again
            question = replace(question, study_handle=handle)
    for item in ask_stream(args.server, question, ct, timeout_s=args.timeout_s):
        if isinstance(item, AskResult):
            return item
        printer(item)
    raise AssertionError("unreachable")  # pragma: no cover


def answer_files(result: Any) -> dict[str, bytes]:
    """What --out writes: the answer's files, its label map (NIfTI) and answer.json."""
    files = dict(result.files)
    if result.labels is not None and "labels.nii.gz" not in files:
        from radmesh.report.artifacts import nifti_bytes

        files["labels.nii.gz"] = nifti_bytes(result.labels)
    files["answer.json"] = (json.dumps(result.answer, indent=2, ensure_ascii=False, default=_jsonable) + "\n"
                            ).encode("utf-8")
    return files


def _jsonable(value: Any) -> Any:
    if isinstance(value, bytes):
        return f"<{len(value)} bytes>"
    raise TypeError(f"{type(value).__name__} is not JSON")


def run(args: Any) -> int:
    from radmesh.cli import announce_dicom

    if args.embedded and args.server:
        raise InvalidInputError("--embedded runs everything in this process; leave out --server")
    if args.session and not args.server:
        raise InvalidInputError("--session continues a conversation held by a running assistant: give --server")
    if args.weights and args.server:
        raise InvalidInputError("--weights is for in-process runs; a --server answers with its own model")
    if not args.ct and not args.session:
        raise InvalidInputError("give --ct (the study), or --server and --session to continue a conversation")
    ct, study = None, {}
    if args.ct:
        from radmesh.common.imageio import read_ct_and_study

        ct, _, study = read_ct_and_study(args.ct, announce_dicom)
    question = _question(args, study)
    printer = _StepPrinter(args.quiet)
    result = _run_remote(args, question, ct, printer) if args.server else _run_local(args, question, ct, printer)
    answer = result.answer
    if args.out:
        from radmesh.report.artifacts import write_report_folder

        files = answer_files(result)
        written = write_report_folder(args.out, files)
        if not args.quiet:
            print(f"wrote {', '.join(str(p) for p in written)}", file=sys.stderr)
    if args.json:
        print(json.dumps(answer, indent=2, ensure_ascii=False, default=_jsonable))
    else:
        print(answer["text"])
        _print_table(answer.get("findings"))
        if args.server:
            print(f"\nsession {answer['session_id']} — continue with: radmesh ask --server {args.server} "
                  f"--session {answer['session_id']} \"...\"")
    return 0


def _print_table(findings: dict[str, Any] | None) -> None:
    if not findings:
        return
    from radmesh.measurement.summary import format_text

    print()
    print(format_text(findings))
