#!/usr/bin/env bash
# Build a TensorRT FP16 plan of the radmesh Universal Model from its ONNX graph.
#
#   scripts/build_trt_plan.sh MODEL.onnx MODEL.plan
#
# RUNS ON A GPU NODE, at deploy time: a TensorRT plan is tied to the GPU architecture
# and the TensorRT version that built it, so it is never shipped, only built where
# Triton will load it (e.g. an init container of the Triton pod, or by hand inside
# the Triton / TensorRT NGC container, where trtexec is /usr/src/tensorrt/bin/trtexec).
# On a machine without TensorRT it stops with an error saying so.
#
# The ONNX graph comes from `radmesh export --tensorrt` (radmesh.model.export.export_for_tensorrt):
# inputs image (B,1,96,96,96) and class_embedding (B,K,E) — one class table per window,
# because TensorRT gives every input the batch dimension and Triton's dynamic batcher joins
# windows of different requests — output logits (B,K,96,96,96), B and K dynamic, heads as
# plain MatMuls (the "chunked" Loop of the CPU graph is tuned for ONNX Runtime). The CPU
# graph of plain `radmesh export` (class_embedding (K,E)) is refused when python3 can read
# the file with the onnx package; otherwise trtexec's own shape check refuses it.
#
# The plan has one optimization profile over batch B in MIN_BATCH..MAX_BATCH and classes
# K in MIN_CLASSES..MAX_CLASSES (both inputs' --minShapes/--optShapes/--maxShapes), FP16,
# matching model_repository/universal_seg_trt/config.pbtxt (max_batch_size 8).
# FP16: TensorRT ≤ 10 takes trtexec's --fp16. TensorRT 11 removed the precision flags
# (networks are strongly typed), so there the graph is first converted to FP16 with
# NVIDIA ModelOpt AutoCast (python -m modelopt.onnx.autocast, I/O kept float32 so the
# Triton config is the same); without modelopt the script stops and says so.
# Environment (defaults):
#   TRTEXEC        path to trtexec            (trtexec on PATH, else /usr/src/tensorrt/bin/trtexec)
#   EMBED_DIM      E of the class table       (384: MiniLM; 512 for CLIP tables)
#   MIN_BATCH=1 OPT_BATCH=4 MAX_BATCH=8       window batch of the profile
#   MIN_CLASSES=1 OPT_CLASSES=8 MAX_CLASSES=32  classes of the profile
#   WORKSPACE_MIB  builder workspace          (4096)
# Triton's config.pbtxt for the plan must keep max_batch_size ≤ MAX_BATCH (8 there) and
# requests within MAX_CLASSES classes. Activation memory grows with MAX_BATCH × MAX_CLASSES
# (the heads' intermediates are B·K·8 × 96³ values): lower them on small GPUs, and
# max_batch_size in the config with MAX_BATCH.
#
# Exit codes: 0 built; 2 usage or bad input; 3 trtexec (or, on TensorRT 11, modelopt) not
# available; 4 no plan written; other: trtexec's own failure.
set -euo pipefail

die() { local code=$1; shift; echo "build_trt_plan: error: $*" >&2; exit "$code"; }

[ "$#" -eq 2 ] || die 2 "usage: $0 MODEL.onnx MODEL.plan"
ONNX=$1
PLAN=$2
[ -f "$ONNX" ] || die 2 "$ONNX: no such ONNX file (make it with \`radmesh export\`)"

EMBED_DIM=${EMBED_DIM:-384}
MIN_BATCH=${MIN_BATCH:-1}; OPT_BATCH=${OPT_BATCH:-4}; MAX_BATCH=${MAX_BATCH:-8}
MIN_CLASSES=${MIN_CLASSES:-1}; OPT_CLASSES=${OPT_CLASSES:-8}; MAX_CLASSES=${MAX_CLASSES:-32}
WORKSPACE_MIB=${WORKSPACE_MIB:-4096}
for v in EMBED_DIM MIN_BATCH OPT_BATCH MAX_BATCH MIN_CLASSES OPT_CLASSES MAX_CLASSES WORKSPACE_MIB; do
  [[ "${!v}" =~ ^[1-9][0-9]*$ ]] || die 2 "$v must be a positive integer, got '${!v}'"
done
[ "$MIN_BATCH" -le "$OPT_BATCH" ] && [ "$OPT_BATCH" -le "$MAX_BATCH" ] || die 2 "need MIN_BATCH ≤ OPT_BATCH ≤ MAX_BATCH"
[ "$MIN_CLASSES" -le "$OPT_CLASSES" ] && [ "$OPT_CLASSES" -le "$MAX_CLASSES" ] || die 2 "need MIN_CLASSES ≤ OPT_CLASSES ≤ MAX_CLASSES"

# The CPU graph takes class_embedding (K,E); a plan built from it would not match the Triton
# config. Checked here when python3 has onnx (the GPU node's container may not).
LAYOUT=$(python3 - "$ONNX" 2>/dev/null <<'PY' || true
import sys
import onnx
m = onnx.load(sys.argv[1], load_external_data=False)
print(next(len(i.type.tensor_type.shape.dim) for i in m.graph.input if i.name == "class_embedding"))
PY
)
if [ -n "$LAYOUT" ] && [ "$LAYOUT" != "3" ]; then
  die 2 "$ONNX takes class_embedding with $LAYOUT dimensions, not (B,K,E): it is the CPU graph. \
Export the TensorRT graph with: radmesh export --tensorrt --out universal_seg_trt.onnx"
fi

if [ -n "${TRTEXEC:-}" ]; then
  [ -x "$TRTEXEC" ] || die 3 "TRTEXEC=$TRTEXEC is not an executable trtexec"
elif command -v trtexec >/dev/null 2>&1; then
  TRTEXEC=$(command -v trtexec)
elif [ -x /usr/src/tensorrt/bin/trtexec ]; then
  TRTEXEC=/usr/src/tensorrt/bin/trtexec
else
  die 3 "trtexec (TensorRT) not found. This script runs on a GPU node with TensorRT installed \
(e.g. inside the Triton or TensorRT NGC container); set TRTEXEC=/path/to/trtexec if it is elsewhere. \
On CPU nodes radmesh serves the ONNX graph with ONNX Runtime instead and needs no plan."
fi

W=96
shapes() { echo "image:${1}x1x${W}x${W}x${W},class_embedding:${1}x${2}x${EMBED_DIM}"; }

mkdir -p "$(dirname "$PLAN")"
TMP="$(dirname "$PLAN")/.partial-$(basename "$PLAN").$$"
trap 'rm -f "$TMP" "$(dirname "$PLAN")/.partial-$(basename "$PLAN").$$.fp16.onnx"' EXIT

HELP=$("$TRTEXEC" --help 2>&1 || true)
PRECISION=()
SOURCE=$ONNX
if grep -q -- '--fp16' <<<"$HELP"; then
  PRECISION=(--fp16)
else
  # TensorRT 11+: strongly typed networks only; FP16 comes from the graph itself.
  SOURCE="$(dirname "$PLAN")/.partial-$(basename "$PLAN").$$.fp16.onnx"
  python3 -c 'import modelopt.onnx.autocast' 2>/dev/null || die 3 "this trtexec has no --fp16 \
(TensorRT 11 or later) and NVIDIA ModelOpt is not installed to make an FP16 graph: pip install nvidia-modelopt[onnx], \
or run python -m modelopt.onnx.autocast --onnx_path $ONNX --low_precision_type fp16 --keep_io_types yourself"
  python3 -m modelopt.onnx.autocast --onnx_path "$ONNX" --output_path "$SOURCE" --low_precision_type fp16 \
    --keep_io_types >&2 || die 4 "ModelOpt AutoCast could not convert $ONNX to FP16"
fi
BUILD_ONLY=()
if grep -q -- '--skipInference' <<<"$HELP"; then BUILD_ONLY=(--skipInference)
elif grep -q -- '--buildOnly' <<<"$HELP"; then BUILD_ONLY=(--buildOnly); fi

echo "build_trt_plan: $ONNX -> $PLAN (FP16; B ${MIN_BATCH}..${MAX_BATCH}, K ${MIN_CLASSES}..${MAX_CLASSES}, E ${EMBED_DIM}) with $TRTEXEC" >&2
"$TRTEXEC" \
  --onnx="$SOURCE" \
  --saveEngine="$TMP" \
  ${PRECISION[@]+"${PRECISION[@]}"} \
  --minShapes="$(shapes "$MIN_BATCH" "$MIN_CLASSES")" \
  --optShapes="$(shapes "$OPT_BATCH" "$OPT_CLASSES")" \
  --maxShapes="$(shapes "$MAX_BATCH" "$MAX_CLASSES")" \
  --memPoolSize=workspace:"$WORKSPACE_MIB" \
  ${BUILD_ONLY[@]+"${BUILD_ONLY[@]}"}

[ -s "$TMP" ] || die 4 "trtexec finished but wrote no plan"
mv -f "$TMP" "$PLAN"
trap - EXIT
echo "build_trt_plan: wrote $PLAN" >&2
