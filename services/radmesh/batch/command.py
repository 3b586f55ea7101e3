"""``radmesh batch``: one question over a cohort, on Ray.

    radmesh batch --manifest studies.csv --prompt "segment the pancreatic tumor and measure it" --out cohort1
    radmesh batch --manifest studies.csv --prompt "..." --out cohort1 --ray-address ray://head:10001 \\
                  --assistant-url assistant:50051

Prints a progress bar and each failure on stderr, the outcome on stdout; exit status 0 when
every study is done, 1 when some failed (their reasons are in DIR/summary.json), 2 for a bad
manifest or option, 130 on Ctrl-C or SIGTERM (the studies finished so far stay done; run it
again to continue).
"""

from __future__ import annotations

import sys
from typing import Any

from radmesh.common.errors import InvalidInputError

EXIT_SOME_FAILED = 1


def add_arguments(p: Any) -> None:
    from radmesh.batch.run import DEFAULT_CPUS_PER_STUDY, DEFAULT_MAX_RETRIES
    from radmesh.common.config import add_env_argument

    p.add_argument("--manifest", required=True,
                   help="CSV with a header: study_id,path[,prompt] (path: NIfTI file, DICOM folder or .zip; "
                        "relative to the manifest's folder); a prompt cell overrides --prompt for its study")
    p.add_argument("--prompt", help='the question for every study, e.g. "segment the pancreatic tumor and measure it"')
    p.add_argument("--out", required=True,
                   help="output folder: studies/<study_id>/ (what radmesh ask --out writes, and result.json), "
                        "lesions.csv/.parquet, structures.csv/.parquet, summary.json. Run again to continue: "
                        "done studies are skipped")
    p.add_argument("--ray-address", help="an existing Ray cluster: auto, HOST:6379, or ray://HOST:10001 (Ray "
                                         "client; a KubeRay head). Default: a local Ray cluster for this run")
    # From the environment too: the chart's Ray pods carry RADMESH_ASSISTANT_URL, so a RayJob's
    # studies call the mesh's assistant rather than each worker loading the whole pipeline.
    add_env_argument(p, "--assistant-url", help="HOST:PORT of a running assistant every task calls (unset: every "
                                                "service inside each Ray worker, as `radmesh ask` without --server)")
    p.add_argument("--num-workers", type=int, help="studies at once (default: CPUs of the cluster / "
                                                   "--cpus-per-study); locally, the Ray cluster gets "
                                                   "num-workers × cpus-per-study CPUs")
    p.add_argument("--cpus-per-study", type=float, default=DEFAULT_CPUS_PER_STUDY,
                   help=f"CPUs Ray reserves for each study (default {DEFAULT_CPUS_PER_STUDY:g})")
    p.add_argument("--max-retries", type=int, default=DEFAULT_MAX_RETRIES,
                   help=f"times Ray runs a study again when its worker dies (default {DEFAULT_MAX_RETRIES}); "
                        "an invalid study is never retried")
    p.add_argument("--formats", help="files besides the answer per study, from seg,sr,nifti (as radmesh ask)")
    p.add_argument("--figures", action="store_true", help="key images of the lesions in each study's folder")
    p.add_argument("--fast", action="store_true", help="segment at 3 mm instead of 1.5 mm (faster, coarser)")
    p.add_argument("--weights", help="model weights, in-process only (default: the shipped reference weights; "
                                     "on a remote cluster the path must exist on its workers)")
    p.add_argument("--timeout-s", type=float, default=1800.0, help="deadline of each call to --assistant-url, s")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: Any) -> int:
    from radmesh.batch.manifest import read_manifest
    from radmesh.batch.run import run_batch
    from radmesh.batch.study import Settings
    from radmesh.report.artifacts import parse_formats

    if args.weights and args.assistant_url:
        raise InvalidInputError("--weights is for in-process runs; an --assistant-url answers with its own model")
    if args.prompt is not None and not args.prompt.strip():
        raise InvalidInputError("--prompt is empty")
    rows = read_manifest(args.manifest, args.prompt.strip() if args.prompt else None)
    settings = Settings(assistant_url=args.assistant_url, weights=args.weights, fast=args.fast,
                        formats=parse_formats(args.formats if args.formats is not None else ""),
                        figures=args.figures, timeout_s=args.timeout_s)
    result = run_batch(rows, args.out, settings, ray_address=args.ray_address, num_workers=args.num_workers,
                       cpus_per_study=args.cpus_per_study, max_retries=args.max_retries,
                       progress=not args.no_progress)
    print(f"{len(result.done) + len(result.already_done)} of {result.total} studies done"
          + (f" ({len(result.already_done)} already done)" if result.already_done else "")
          + (f", {len(result.failed)} failed" if result.failed else "")
          + (f", {len(result.not_run)} not run" if result.not_run else ""))
    for study_id, reason in result.failed.items():
        print(f"  failed {study_id}: {reason}")
    print(f"wrote {', '.join(str(p) for p in result.tables)} and {result.summary_path}")
    return EXIT_SOME_FAILED if result.failed else 0


def main_args(args: Any) -> int:
    try:
        return run(args)
    except KeyboardInterrupt:
        print("radmesh: interrupted; the studies finished so far are done, run the same command to continue",
              file=sys.stderr)
        return 130
