"""Build step of the Triton images: the model repository ``radmesh serve triton`` would serve.

    python docker/prepare_models.py --source model_repository --out /models [--threads N]

``universal_seg`` (CPU) is made by :func:`radmesh.triton.launcher.prepare_repository`, as
``radmesh serve triton`` makes its runtime copy: the class-table width E of the weights
(``RADMESH_MODEL_WEIGHTS``) and their ONNX graph, exported and verified. The graph is then
moved into ``universal_seg/1/model.onnx`` and ``onnx_path`` made relative, so the folder is
self-contained (the launcher points at its cache instead, which an image does not keep).
``universal_seg_trt`` (GPU) gets its config with the same E and an empty ``1/``: its plan is
built on the GPU node at deploy time (``scripts/build_trt_plan.sh``), never in an image.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from google.protobuf import text_format

from radmesh.model.runtime import load
from radmesh.triton.launcher import CPU_MODEL, GPU_MODEL, prepare_repository, read_config


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="prepare_models.py")
    p.add_argument("--source", required=True, help="the source tree's model_repository/")
    p.add_argument("--out", required=True, help="the repository to write (the image's /models)")
    p.add_argument("--threads", type=int, default=0, help="ONNX Runtime threads of the CPU model (0: one per core)")
    args = p.parse_args(argv)
    source, out = Path(args.source), Path(args.out)

    prepare_repository(out, models=(CPU_MODEL,), threads=args.threads or None, source=source)
    config_path = out / CPU_MODEL / "config.pbtxt"
    config = read_config(config_path)
    graph = Path(config.parameters["onnx_path"].string_value)
    shutil.copy2(graph, out / CPU_MODEL / "1" / "model.onnx")
    config.parameters["onnx_path"].string_value = "model.onnx"      # relative: the version folder
    config_path.write_text(f"# made at image build time by docker/prepare_models.py from {source / CPU_MODEL}\n"
                           + text_format.MessageToString(config))

    model, _ = load(None)
    trt = read_config(source / GPU_MODEL / "config.pbtxt")
    for tensor in trt.input:
        if tensor.name == "class_embedding":
            tensor.dims[-1] = int(model.embed_dim)
    (out / GPU_MODEL / "1").mkdir(parents=True, exist_ok=True)
    (out / GPU_MODEL / "config.pbtxt").write_text(
        f"# made at image build time by docker/prepare_models.py from {source / GPU_MODEL}; "
        "1/model.plan is built on the GPU node (scripts/build_trt_plan.sh)\n" + text_format.MessageToString(trt))
    print(f"prepared {out}: {CPU_MODEL} (E={model.embed_dim}, {graph.stat().st_size >> 20} MiB graph), {GPU_MODEL}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
