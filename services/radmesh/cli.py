"""The ``radmesh`` command: one entry point, obvious flags, files in, files out.

    radmesh phantom --seed 0 --out case0
    radmesh measure --ct case0/ct.nii.gz --mask case0/labels.nii.gz --json
    radmesh serve measurement --port 50054
    radmesh up

Errors a user can act on print one line (``radmesh: error: ...``) and exit
non-zero; set RADMESH_DEBUG=1 to see a traceback for anything else.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import traceback
from collections.abc import Sequence

from radmesh import __version__
from radmesh.common.errors import InvalidInputError, RadmeshError

EXIT_INTERNAL = 70  # sysexits EX_SOFTWARE


def _parse_classes(text: str | None) -> list[int] | None:
    """"28,11" or "pancreas tumor,liver" → vocabulary indices."""
    from radmesh.common import vocabulary

    if not text:
        return None
    out = []
    for item in (t.strip() for t in text.split(",")):
        if not item:
            continue
        out.append(vocabulary.get(int(item)).index if item.lstrip("-").isdigit() else vocabulary.by_name(item).index)
    return out


def _parse_floats(text: str, n: int, what: str) -> tuple[float, ...]:
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        raise InvalidInputError(f"{what} must be {n} comma-separated numbers, got {text!r}") from None
    if len(values) != n:
        raise InvalidInputError(f"{what} must be {n} comma-separated numbers, got {text!r}")
    return values


def announce_dicom(sentence: str) -> None:
    """Tell the user which DICOM series was read (stderr: stdout may carry --json)."""
    print(f"radmesh: DICOM {sentence}", file=sys.stderr, flush=True)


# ---- phantom ---------------------------------------------------------------
def cmd_phantom(args: argparse.Namespace) -> int:
    from radmesh.phantom.generator import PhantomConfig, generate, write_phantom

    if args.size < 32:
        raise InvalidInputError(f"--size {args.size} is too small (at least 32 voxels in-plane)")
    config = PhantomConfig(
        in_plane_size=args.size,
        spacing_xyz_mm=_parse_floats(args.spacing_mm, 3, "--spacing-mm") if args.spacing_mm else None,
        slices=args.slices,
        oblique=args.oblique,
        lesions=tuple(_parse_classes(args.lesions) or ()) if args.lesions is not None else None,
        noise=not args.no_noise,
        version=args.phantom_version, phase=args.phase, region=args.region, kernel=args.kernel,
    )
    phantom = generate(args.seed, config, progress=not args.quiet)
    paths = write_phantom(phantom, args.out)
    if not args.quiet:
        g = phantom.ct.geometry
        print(f"phantom seed {args.seed}: {g.shape_zyx[2]}×{g.shape_zyx[1]}×{g.shape_zyx[0]} voxels, "
              f"spacing {', '.join(f'{s:.2f}' for s in g.spacing_xyz_mm)} mm, "
              f"{len(phantom.truth['lesions'])} lesion(s)")
        acq = phantom.truth["acquisition"]
        if "region" in acq:
            print(f"  v2: {acq['region']}, {acq['phase']} phase, {acq['kernel']} kernel, metal: {acq['metal']['kind']}")
        for p in paths.values():
            print(f"  {p}")
    return 0


# ---- measure ---------------------------------------------------------------
def cmd_measure(args: argparse.Namespace) -> int:
    from radmesh.common.imageio import read_volume
    from radmesh.measurement.summary import format_text

    classes = _parse_classes(args.classes)
    ct = read_volume(args.ct, announce_dicom)
    labels = read_volume(args.mask)
    if args.server:
        from radmesh.measurement.client import measure_remote

        result = measure_remote(args.server, ct, labels, classes=classes,
                                min_lesion_mm3=args.min_lesion_mm3, timeout_s=args.timeout_s)
    else:
        from radmesh.measurement.core import measure

        result = measure(ct, labels, classes=classes, min_lesion_mm3=args.min_lesion_mm3).to_dict()
    text = json.dumps(result, indent=2) if args.json else format_text(result)
    if args.out:
        from radmesh.common.fileio import write_text_atomic

        write_text_atomic(args.out, text + "\n")
    else:
        print(text)
    return 0


# ---- parse / encode -----------------------------------------------------------
def cmd_parse(args: argparse.Namespace) -> int:
    if args.server:
        from radmesh.text.client import parse_remote

        result = parse_remote(args.server, args.prompt, timeout_s=args.timeout_s)
    else:
        from radmesh.text.parse import parse

        result = parse(args.prompt).to_dict()
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    if result["unsupported"]:
        near = ", ".join(s["name"] for s in result["suggestions"])
        print(f"not supported: {result['unsupported_phrase']!r}" + (f" (nearest: {near})" if near else ""))
        return 0
    for t in result["targets"]:
        extra = ", ".join(x for x in (t["laterality"], t["subregion"]) if x)
        print(f"target  {t['class_index']:>2} {t['name']}" + (f" ({extra})" if extra else ""))
    print(f"actions {', '.join(result['actions']) or '-'}" + ("   (if any)" if result["if_any"] else ""))
    if result["unsupported_phrase"]:
        print(f"ignored {result['unsupported_phrase']!r}: not in the vocabulary")
    return 0


def cmd_encode(args: argparse.Namespace) -> int:
    classes = _parse_classes(args.classes) or []
    if not args.texts and not classes:
        raise InvalidInputError("give texts to embed, or --classes")
    if args.server:
        from radmesh.text.client import encode_remote

        array, backend, encoder_id = encode_remote(args.server, args.texts, classes, args.backend,
                                                   timeout_s=args.timeout_s)
    else:
        from radmesh.text.encoders import get_encoder

        options = {"clip_weights": args.clip_weights} if args.clip_weights else {}
        if args.class_table:
            options = {"table": args.class_table}
        encoder = get_encoder(args.backend, **options)
        parts = ([encoder.encode(args.texts)] if args.texts else []) + \
                ([encoder.encode_classes(classes)] if classes else [])
        import numpy as np

        array, backend, encoder_id = np.concatenate(parts), encoder.backend, encoder.encoder_id
    if args.out:
        import numpy as np

        from radmesh.common.fileio import atomic_output

        with atomic_output(args.out, suffix=".npy") as tmp:
            np.save(tmp, array)
    if args.json:
        print(json.dumps({"backend": backend, "dimension": int(array.shape[1]), "encoder_id": encoder_id,
                          "embeddings": array.tolist()}))
    else:
        print(f"{array.shape[0]} embedding(s) of dimension {array.shape[1]} from {backend} ({encoder_id})"
              + (f" -> {args.out}" if args.out else ""))
    return 0


# ---- model: segment / export / train / evaluate -----------------------------------
def cmd_segment(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from radmesh.common.imageio import read_volume
    from radmesh.model.runtime import load, resolve_targets, segment_to_folder

    from radmesh.model.pipeline import check_classes

    if args.server and args.weights:
        raise InvalidInputError("--weights is for in-process runs; a --server segments with its own model")
    if args.min_lesion_mm3 is not None and not (math.isfinite(args.min_lesion_mm3) and args.min_lesion_mm3 > 0):
        # 0 means "the default" on the wire (proto3), so it cannot mean "no minimum" here either
        raise InvalidInputError(f"--min-lesion-mm3 must be a volume > 0 mm³, got {args.min_lesion_mm3:g}")
    if args.server and not args.prompt and not args.classes:
        raise InvalidInputError("give --prompt or --classes")
    # refuse what cannot be answered before reading the CT (a --server refuses against its own model)
    if not args.server:
        classes, _ = resolve_targets(args.prompt, _parse_classes(args.classes))
        check_classes(classes, load(args.weights)[1]["classes"])
    ct = read_volume(args.ct, announce_dicom)
    bars: list = []  # made at the first window, so a request refused before inference prints one line

    def progress(done: int, total: int) -> None:
        if not bars:
            bars.append(tqdm(total=0, unit="window", desc="segment", disable=args.quiet))
        bar = bars[0]
        bar.total = total
        bar.n = done
        bar.refresh()

    try:
        if args.server:
            from radmesh.segmentation.client import segment_to_folder_remote

            summary = segment_to_folder_remote(args.server, ct, args.out, prompt=args.prompt,
                                               classes=_parse_classes(args.classes), fast=args.fast,
                                               overlap=args.overlap, min_lesion_mm3=args.min_lesion_mm3,
                                               progress=progress, timeout_s=args.timeout_s)
        else:
            summary = segment_to_folder(ct, args.out, prompt=args.prompt, classes=_parse_classes(args.classes),
                                        weights=args.weights, fast=args.fast, overlap=args.overlap,
                                        min_lesion_mm3=args.min_lesion_mm3, progress=progress)
    finally:
        for bar in bars:
            bar.close()
    if not args.quiet:
        for c in summary["classes"]:
            state = f"{c['volume_ml']:9.1f} mL" if c["found"] else "not found"
            print(f"{c['name']:<30} {state}")
        print(f"wrote {args.out}/labels.nii.gz and {args.out}/segmentation.json "
              f"({summary['timings_s']['total']:.1f} s, {summary['windows']} windows)")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from radmesh.model.runtime import onnx_for

    if getattr(args, "tensorrt", False):
        from radmesh.model.export import export_for_tensorrt

        if not args.out:
            raise InvalidInputError("--tensorrt needs --out FILE.onnx")
        result = export_for_tensorrt(args.out, args.weights)
        print(f"wrote {result.path} (per-window class tables, max |logit difference| vs PyTorch "
              f"{result.max_abs_diff:.2e})")
        print(f"TensorRT: scripts/build_trt_plan.sh {result.path} model_repository/universal_seg_trt/1/model.plan"
              f"   (on the GPU node, with trtexec)")
        return 0
    path, result = onnx_for(args.weights, args.out)
    checked = f" (max |logit difference| vs PyTorch {result.max_abs_diff:.2e})" \
        if result is not None and result.max_abs_diff is not None else " (cached)"
    print(f"wrote {path}{checked}")
    print("TensorRT: scripts/build_trt_plan.sh " + str(path) + " model.plan   (on a GPU node with trtexec)")
    return 0


def cmd_weights_import(args: argparse.Namespace) -> int:
    from radmesh.model.importer import write_published_weights

    r = write_published_weights(args.published, args.out, args.backbone, _parse_classes(args.classes))
    print(f"wrote {r['weights']} ({r['model_version']}: {r['backbone']}, {r['parameters'] / 1e6:.2f} M parameters, "
          f"{len(r['classes'])} validated classes, {r['weights_bytes'] / 1e6:.0f} MB)")
    print(f"wrote {r['class_table']} (the checkpoint's class embeddings, for the text service)")
    print(f"segment:  radmesh segment --weights {r['weights']} --ct CT.nii.gz --prompt \"segment the liver\" --out OUT")
    print(f"the mesh: radmesh up --weights {r['weights']}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from radmesh.report.command import main_args

    return main_args(args)


def cmd_ask(args: argparse.Namespace) -> int:
    from radmesh.assistant.command import run

    return run(args)


def cmd_batch(args: argparse.Namespace) -> int:
    from radmesh.batch.command import main_args

    return main_args(args)


def cmd_train(args: argparse.Namespace) -> int:
    from radmesh.model.train import main as train_main

    return train_main(args.rest)


def cmd_evaluate(args: argparse.Namespace) -> int:
    from radmesh.model.evaluate import main as evaluate_main

    return evaluate_main(args.rest)


# ---- serve / up --------------------------------------------------------------
def cmd_serve(args: argparse.Namespace) -> int:
    from radmesh.common.config import serve_config_from_args
    from radmesh.common.server import run
    from radmesh.services import load_spec

    return run(load_spec(args.service), serve_config_from_args(args, args.option_names))


def cmd_up(args: argparse.Namespace) -> int:
    from radmesh.up import up

    return up(workdir=args.workdir, host=args.host, port_offset=args.port_offset, ui_port=args.ui_port,
              weights=args.weights)


def cmd_down(args: argparse.Namespace) -> int:
    from radmesh.up import down

    return down(workdir=args.workdir)


def cmd_demo(args: argparse.Namespace) -> int:
    from radmesh.up import demo

    return demo(workdir=args.workdir, port_offset=args.port_offset)


def cmd_version(args: argparse.Namespace) -> int:
    print(f"radmesh {__version__}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    from radmesh.common.config import add_serve_arguments
    from radmesh.services import SERVICES

    parser = argparse.ArgumentParser(prog="radmesh", description="Ask a CT scan a question in plain words.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("phantom", help="write a synthetic CT phantom with its labels and analytic truth")
    p.add_argument("--seed", type=int, required=True, help="random seed; same seed, same phantom")
    p.add_argument("--out", required=True, help="output folder (ct.nii.gz, labels.nii.gz, truth.json, ...)")
    p.add_argument("--size", type=int, default=512, help="in-plane matrix size, voxels (default 512)")
    p.add_argument("--spacing-mm", help="voxel size x,y,z in mm (default: random, 0.6-1.0 in-plane, 0.8-5 slices)")
    p.add_argument("--slices", type=int, help="number of slices (default: from a 150-300 mm coverage)")
    obl = p.add_mutually_exclusive_group()
    obl.add_argument("--oblique", dest="oblique", action="store_true", default=None, help="tilt the grid")
    obl.add_argument("--no-oblique", dest="oblique", action="store_false", help="axis-aligned grid")
    p.add_argument("--lesions", help="lesion classes that must be present (indices or names, comma-separated); "
                                      "others absent. Empty string: no lesions. Default: random")
    p.add_argument("--no-noise", action="store_true", help="leave out image noise")
    p.add_argument("--phantom-version", type=int, choices=(1, 2), default=1,
                   help="1: the phantoms the shipped weights learnt from; 2: all 32 classes, bone, bowel, "
                        "pelvis, contrast phases, partial fields of view")
    # The v2 choices are checked by PhantomConfig (one readable line when wrong), so the
    # parser need not import the generator.
    p.add_argument("--phase", help="v2: contrast phase: non-contrast, arterial, portal-venous, delayed (default: random)")
    p.add_argument("--region", help="v2: what the scan covers: abdomen, abdomen-pelvis, chest-abdomen, chest, pelvis, "
                                    "slab (default: random)")
    p.add_argument("--kernel", help="v2: reconstruction kernel noise texture: soft, standard, sharp (default: random)")
    p.add_argument("--quiet", action="store_true", help="no progress bar or summary")
    p.set_defaults(func=cmd_phantom)

    p = sub.add_parser("measure", help="measure structures and lesions in a label map")
    p.add_argument("--ct", required=True, help="CT: NIfTI file, DICOM folder or .zip of slices, or one DICOM file")
    p.add_argument("--mask", required=True, help="label map (NIfTI, vocabulary indices) on the CT's grid")
    p.add_argument("--classes", help="classes to measure, indices or names, comma-separated (default: all present)")
    p.add_argument("--min-lesion-mm3", type=float, default=10.0, help="smallest lesion reported, mm³ (default 10)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument("--out", help="write to this file instead of stdout")
    p.add_argument("--server", help="HOST:PORT of a running measurement service (default: measure in-process)")
    p.add_argument("--timeout-s", type=float, default=300.0, help="deadline of the remote call, s")
    p.set_defaults(func=cmd_measure)

    p = sub.add_parser("parse", help="understand a clinician's request: targets, actions, 'if any'")
    p.add_argument("prompt", help='the request, e.g. "segment the pancreatic tumor and measure it"')
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument("--server", help="HOST:PORT of a running text service (default: in-process)")
    p.add_argument("--timeout-s", type=float, default=30.0, help="deadline of the remote call, s")
    p.set_defaults(func=cmd_parse)

    p = sub.add_parser("encode", help="embed texts or vocabulary classes with a text encoder")
    p.add_argument("texts", nargs="*", help="texts to embed")
    p.add_argument("--classes", help="vocabulary classes to embed with the Universal Model template")
    p.add_argument("--backend", default="minilm", choices=("minilm", "clip", "table"), help="encoder")
    p.add_argument("--clip-weights", help="open_clip ViT-B/32 weights file (clip backend)")
    p.add_argument("--class-table", help="K×E class table file (table backend)")
    p.add_argument("--out", help="write the N×E float32 array to this .npy file")
    p.add_argument("--json", action="store_true", help="print the embeddings as JSON")
    p.add_argument("--server", help="HOST:PORT of a running text service (default: in-process)")
    p.add_argument("--timeout-s", type=float, default=60.0, help="deadline of the remote call, s")
    p.set_defaults(func=cmd_encode)

    p = sub.add_parser("segment", help="segment a CT from a request or class list (in-process, ONNX Runtime)")
    p.add_argument("--ct", required=True, help="CT: NIfTI file, DICOM folder or .zip of slices, or one DICOM file")
    p.add_argument("--prompt", help='what to segment, e.g. "segment the pancreatic tumor"')
    p.add_argument("--classes", help="or vocabulary classes, indices or names, comma-separated")
    p.add_argument("--out", required=True, help="output folder (labels.nii.gz, segmentation.json)")
    p.add_argument("--weights", help="model weights (default: the shipped reference model)")
    p.add_argument("--fast", action="store_true", help="3 mm instead of 1.5 mm: faster, coarser")
    p.add_argument("--overlap", type=float, help="sliding-window overlap, 0..0.9")
    p.add_argument("--min-lesion-mm3", type=float, default=None,
                   help="drop lesion components smaller than this, mm³ (default: 20 for lung "
                        "nodules, 100 for other lesions)")
    p.add_argument("--quiet", action="store_true")
    p.add_argument("--server", help="HOST:PORT of a running segmentation service (default: in-process)")
    p.add_argument("--timeout-s", type=float, default=900.0, help="deadline of the remote call, s")
    p.set_defaults(func=cmd_segment)

    p = sub.add_parser("report", help="draft a structured report (text, JSON, DICOM SEG/SR, NIfTI) of a label map")
    from radmesh.report.command import add_arguments as _report_arguments

    _report_arguments(p)
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("export", help="export the model to ONNX (verified against PyTorch)")
    p.add_argument("--weights", help="model weights (default: the shipped reference model)")
    p.add_argument("--out", help="ONNX file to write (default: the cache radmesh segment uses)")
    p.add_argument("--tensorrt", action="store_true",
                   help="the graph for Triton's TensorRT plan: class_embedding (B,K,E), one table per window; "
                        "needs --out (then scripts/build_trt_plan.sh on the GPU node)")
    p.set_defaults(func=cmd_export)

    for name, func, what in (("train", cmd_train, "train the model on synthetic phantoms"),
                             ("evaluate", cmd_evaluate, "evaluate weights on held-out phantoms")):
        p = sub.add_parser(name, help=what, add_help=False)
        p.add_argument("rest", nargs=argparse.REMAINDER, help=f"arguments of {name} (see radmesh {name} --help)")
        p.set_defaults(func=func)

    from radmesh.assistant.command import add_arguments as add_ask_arguments

    p = sub.add_parser("ask", help="ask a question about a CT in plain words (the assistant's conversation)")
    add_ask_arguments(p)
    p.set_defaults(func=cmd_ask)

    from radmesh.batch.command import add_arguments as add_batch_arguments

    p = sub.add_parser("batch", help="one question over a cohort of studies (a CSV manifest), on Ray; resumable",
                       description="Answer one question for every study of a manifest, each study a Ray task "
                                   "(a local Ray cluster, or --ray-address). Results: DIR/studies/<id>/, the "
                                   "cohort tables DIR/lesions.csv|.parquet and DIR/structures.csv|.parquet, "
                                   "DIR/summary.json. Run again to continue: done studies are skipped. Exit 0 "
                                   "when every study is done, 1 when some failed, 2 for a bad manifest.")
    add_batch_arguments(p)
    p.set_defaults(func=cmd_batch)

    # the commands with a --server: how to reach it (TLS, client certificate, bearer token), added once here
    from radmesh.common.config import add_client_security_arguments

    for name in ("measure", "parse", "encode", "segment", "report", "ask"):
        add_client_security_arguments(sub.choices[name])
        sub.choices[name].set_defaults(calls_server=True)

    p = sub.add_parser("serve", help="run one service of the mesh")
    serve_sub = p.add_subparsers(dest="service", required=True, metavar="SERVICE")
    for name, info in SERVICES.items():
        sp = serve_sub.add_parser(name, help=info.help)
        add_serve_arguments(sp, default_port=info.port, default_metrics_port=info.metrics_port)
        names = info.add_options(sp) if info.add_options else ()
        sp.set_defaults(func=cmd_serve, option_names=names)
    # Triton is a tritonserver process, not one of our gRPC ServiceSpecs: its own flags and lifecycle
    from radmesh.triton.serve import add_parser as add_triton_parser

    add_triton_parser(serve_sub)

    workdir_help = "folder for the sample studies, logs and the record of what runs (default .radmesh)"
    p = sub.add_parser("up", help="run the whole product locally (Triton, every service, the chat UI) until Ctrl-C")
    p.add_argument("--workdir", default=".radmesh", help=workdir_help)
    p.add_argument("--host", default="127.0.0.1", help="address every part listens on (default 127.0.0.1)")
    p.add_argument("--port-offset", type=int, default=0, help="add N to every default port (default 0)")
    p.add_argument("--ui-port", type=int, help="the UI's port (default 7860 + offset)")
    p.add_argument("--weights", help="model weights every part serves (default: the shipped reference model; "
                                     "e.g. a file from `radmesh weights import`)")
    p.set_defaults(func=cmd_up)

    p = sub.add_parser("down", help="stop what `radmesh up` started from the same --workdir")
    p.add_argument("--workdir", default=".radmesh", help=workdir_help)
    p.set_defaults(func=cmd_down)

    p = sub.add_parser("demo", help="the mesh without the UI: the sample's question asked once, then stop")
    p.add_argument("--workdir", default=".radmesh", help=workdir_help)
    p.add_argument("--port-offset", type=int, default=0, help="add N to every default port (default 0)")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("weights", help="make model weights radmesh can serve")
    weights_sub = p.add_subparsers(dest="weights_command", required=True, metavar="COMMAND")
    wp = weights_sub.add_parser("import", help="a published CLIP-Driven Universal Model checkpoint → radmesh weights")
    wp.add_argument("--published", required=True, help="the published checkpoint (.pth, {'net': state_dict})")
    wp.add_argument("--backbone", choices=("unet", "swinunetr"), help="its backbone (default: read from its keys)")
    wp.add_argument("--out", required=True, help="radmesh weights file to write (.pt); the class table goes beside "
                                                 "it as NAME.class_table.pt")
    wp.add_argument("--classes", help="validated classes, indices or names (default: the 32 the publication "
                                      "trained and evaluated)")
    wp.set_defaults(func=cmd_weights_import)

    p = sub.add_parser("version", help="print the version")
    p.set_defaults(func=cmd_version)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        # train and evaluate own their flags (and --help); hand them the rest of the line
        if argv and argv[0] in ("train", "evaluate"):
            return cmd_train(argparse.Namespace(rest=argv[1:])) if argv[0] == "train" else \
                cmd_evaluate(argparse.Namespace(rest=argv[1:]))
        parser = build_parser()
        args = parser.parse_args(argv)
        if getattr(args, "calls_server", False) and args.server:
            from radmesh.common.security import client_security_from_args, configure_client

            configure_client(client_security_from_args(args))  # bad files: one line before any work
        return args.func(args)
    except RadmeshError as e:
        print(f"radmesh: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("radmesh: interrupted", file=sys.stderr)
        return 130
    except MemoryError:
        print("radmesh: error: out of memory; try a smaller volume", file=sys.stderr)
        return EXIT_INTERNAL
    except Exception as e:  # noqa: BLE001 - the CLI's last line of defence
        if os.environ.get("RADMESH_DEBUG"):
            traceback.print_exc()
        print(f"radmesh: internal error: {type(e).__name__}: {e} (RADMESH_DEBUG=1 shows the traceback)",
              file=sys.stderr)
        return EXIT_INTERNAL


if __name__ == "__main__":
    sys.exit(main())
