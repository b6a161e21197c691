#!/usr/bin/env bash
# Prepare, on the development machine, what benchmarks/gpu_run.sh needs on the device machine (which has no
# network and does not receive ../shared): a wheelhouse .whl/, imagecodecs for the slide benchmark in
# data/gpu/wheels_slides/, and the converted data sets data/gpu/glas, data/gpu/monuseg. All are git-ignored
# (.whl/, /data/); each device call carries what its part needs (64 MiB per call, the working tree included):
#   PARTS=compare: carry [".whl", "data/gpu/glas", "data/gpu/monuseg"]              (~47 MiB)
#   PARTS=bench:   carry [".whl", "data/gpu/wheels_slides", "data/gpu/glas/train/images"]   (~53 MiB)
#
#   bash benchmarks/gpu_prepare.sh                     # WITH_IMAGECODECS=0: skip the 28 MB imagecodecs wheel
#
# Sizes seen (2026-12): smp 0.15 MB, pycocotools 0.4, shapely 2.3, openslide-python 0.04, openslide-bin 2.8,
# imagecodecs 28 MB; GlaS + MoNuSeg with images as JPEG q90 about 40 MB. Everything else pathseg needs (torch,
# torchvision, timm, lightning, safetensors, scipy, scikit-image, tifffile, pillow, pyyaml, matplotlib, tqdm,
# tensorboard) is preinstalled there (/work/.library/device/KINDS.md).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
SHARED=${SHARED:-../shared/data}
QUALITY=${QUALITY:-90}

download() {  # DIR PACKAGE...: CPython 3.12 x86-64 wheels, no dependencies (the rest is preinstalled there)
  local dir=$1; shift
  "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_24_x86_64 \
    --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d "$dir" "$@"
}
rm -rf .whl data/gpu && mkdir -p .whl data/gpu
download .whl segmentation-models-pytorch==0.6.0 pycocotools shapely openslide-python openslide-bin
[ "${WITH_IMAGECODECS:-1}" = 1 ] && download data/gpu/wheels_slides imagecodecs
"$PY" -m pathseg.cli.main data convert glas "$SHARED/glas" --out data/gpu/glas
"$PY" -m pathseg.cli.main data convert monuseg "$SHARED/monuseg" --out data/gpu/monuseg
"$PY" benchmarks/gpu_config.py jpeg data/gpu --quality "$QUALITY"
du -sh .whl data/gpu/*
du -sc .whl data/gpu/glas data/gpu/monuseg | awk 'END {printf "PARTS=compare carries %.1f MiB of 64 (+ the tree)\n", $1 / 1024}'
du -sc .whl data/gpu/wheels_slides data/gpu/glas/train/images 2>/dev/null \
  | awk 'END {printf "PARTS=bench carries %.1f MiB of 64 (+ the tree)\n", $1 / 1024}'
