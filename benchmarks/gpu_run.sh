#!/usr/bin/env bash
# The GPU run of issue 18, on the device machine (one H200, 16 CPU cores, Python 3.12 with torch, torchvision,
# timm and Lightning preinstalled, no network). Prepare first, here: `bash benchmarks/gpu_prepare.sh`; then
#
#   run(command="PARTS=compare bash benchmarks/gpu_run.sh", carry=[".whl", "data/gpu/glas", "data/gpu/monuseg"],
#       timeout_s=600)
#   run(command="PARTS=bench bash benchmarks/gpu_run.sh",
#       carry=[".whl", "data/gpu/wheels_slides", "data/gpu/glas/train/images"], timeout_s=300)
#
# (one command may run 10 minutes and carry 64 MiB: the comparison and the benchmarks are two calls;
# `PARTS="compare bench"` runs both in one where the limits allow). What it writes under $OUT (at most 8 files come back): gpu_run.log, versions.txt, results.md,
# results.csv, glas_miou.png, cost.png, bench_pretrain.txt, bench_slides.txt.
#
#   CPU=1 bash benchmarks/gpu_run.sh   # the same steps on this CPU with tiny budgets (uses .venv, no install)
set -euo pipefail
cd "$(dirname "$0")/.."
CPU=${CPU:-0}
PARTS=${PARTS:-compare bench}
OUT=${OUT:-runs/gpu_run}
WORK=${WORK:-/tmp/pathseg_gpu}
DATA=${DATA:-data/gpu}
mkdir -p "$OUT" "$WORK"
exec > >(tee -a "$OUT/gpu_run.log") 2>&1
stage() { echo "== $(date -u +%H:%M:%S) $*"; }

if [ "$CPU" = 1 ]; then
  PY=${PY:-.venv/bin/python}; DEVICE=cpu
else
  PY=${PY:-python3}; DEVICE=cuda
  stage "install wheels from .whl/"
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    $(ls "$DATA"/wheels_slides/*.whl 2>/dev/null)
  export PYTHONPATH=/tmp/site
fi
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
pathseg() { "$PY" -m pathseg.cli.main "$@"; }
{
  echo "machine: $(nproc) CPU cores; $(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || echo 'no GPU')"
  "$PY" -c "import sys, torch, torchvision, timm, lightning, segmentation_models_pytorch as smp; print('python', sys.version.split()[0], 'torch', torch.__version__, 'cuda', torch.version.cuda, 'torchvision', torchvision.__version__, 'timm', timm.__version__, 'lightning', lightning.__version__, 'smp', smp.__version__)"
} | tee "$OUT/versions.txt"

if [[ " $PARTS " == *" compare "* ]]; then
  stage "unlabeled set: GlaS train + MoNuSeg train"
  rm -rf "$WORK/unlabeled"
  "$PY" benchmarks/gpu_config.py unlabeled "$WORK/unlabeled" "$DATA/glas/train/images" "$DATA/monuseg/train/images"
  "$PY" benchmarks/gpu_config.py config configs/compare/glas_gpu_10min.yaml "$WORK/compare.yaml" \
    --glas "$DATA/glas" --unlabeled "$WORK/unlabeled" $([ "$CPU" = 1 ] && echo --cpu)
  stage "pathseg compare (glas_gpu_10min)"
  start=$(date +%s)
  pathseg compare --config "$WORK/compare.yaml" --out "$WORK/compare"
  stage "compare took $(( $(date +%s) - start )) s"
  cp "$WORK/compare/results.md" "$WORK/compare/results.csv" "$WORK/compare/plots/cost.png" "$OUT/"
  cp "$WORK/compare/plots/"glas_*.png "$OUT/" 2>/dev/null || true
fi

if [[ " $PARTS " == *" bench "* ]]; then
  stage "pretraining throughput (AMP, channels-last vs fp32)"
  if [ "$CPU" = 1 ]; then
    args=(--device cpu --backbone resnet18 --batch 4 --crop 64 --queue 64 --steps 1 --rounds 1 --warmup 1 --threads 1)
    "$PY" benchmarks/pretrain_throughput.py "${args[@]}" --amp --channels-last | tee "$OUT/bench_pretrain.txt"
  else
    for bb in resnet18 resnet50; do
      for flags in "" "--amp --channels-last"; do
        echo "-- $bb batch 128 crop 224 ${flags:-fp32}" | tee -a "$OUT/bench_pretrain.txt"
        # shellcheck disable=SC2086
        "$PY" benchmarks/pretrain_throughput.py --device cuda --backbone $bb --batch 128 --crop 224 --queue 65536 \
          --steps 10 --rounds 3 --warmup 3 $flags | tee -a "$OUT/bench_pretrain.txt"
      done
    done
  fi
  stage "slide inference"
  if "$PY" -c "import imagecodecs" 2>/dev/null; then
    cells="$(dirname "$PWD")/shared/data/glas/train/images"   # where benchmarks/slide_inference.py reads GlaS
    if [ ! -d "$cells" ]; then
      mkdir -p "$cells"
      "$PY" -c "import sys, pathlib; from PIL import Image; src, dst = map(pathlib.Path, sys.argv[1:]); [Image.open(p).save(dst / (p.stem + '.png')) for p in sorted(src.glob('*'))[:24]]" "$DATA/glas/train/images" "$cells"
    fi
    if [ "$CPU" = 1 ]; then
      "$PY" benchmarks/slide_inference.py --device cpu --sizes 1024 --batch 4 --workers 1 --forward-windows 4 \
        --dir "$WORK/slides" | tee "$OUT/bench_slides.txt"
    else
      "$PY" benchmarks/slide_inference.py --device cuda --sizes 8192,16384 --batch 64 --workers 12 \
        --forward-windows 512 --dir "$WORK/slides" | tee "$OUT/bench_slides.txt"
    fi
  else
    echo "imagecodecs is not installed (carry data/gpu/wheels_slides): slide benchmark skipped" \
      | tee "$OUT/bench_slides.txt"
  fi
fi
stage "done; results under $OUT"
