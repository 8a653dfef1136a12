#!/usr/bin/env bash
# Wheels of what the GPU machine's Python lacks, for the device tool to carry (issue 14).
#
#   bash scripts/device/build_wheels.sh [FOLDER]        # default .whl (git-ignored)
#
# The GPU machine (Python 3.12, x86-64; /work/.library/device/KINDS.md) has torch and
# transformers but not diffusers, Hydra or open_clip. This downloads them from the package
# index pip is configured with here, at the versions installed here (what this checkout
# is tested with), as wheels for Python 3.12 on manylinux x86-64; antlr4-python3-runtime
# 4.9.3 (omegaconf's pin) exists only as a source archive, so its pure-Python wheel is
# built here. wandb and matplotlib stay behind: the suite runs logger=none and plots
# nothing. Then scripts/device/check_wheels.py checks every requirement against the
# machine's packages and the 64 MiB a device call carries; a failed check leaves no folder.
# scripts/device/suite.sh installs them there with pip --no-index --no-deps --target.
set -euo pipefail
cd "$(dirname "$0")/../.."
DEST=${1:-.whl}
PY=${PYTHON:-python3}
PYVER=${TINV_WHEEL_PYTHON:-3.12}
PACKAGES=(diffusers importlib_metadata lazy-importer hydra-core omegaconf hydra-submitit-launcher submitit
          open_clip_torch ftfy wcwidth)
specs=()
for p in "${PACKAGES[@]}"; do
  v=$("$PY" -c "import importlib.metadata as m, sys; print(m.version(sys.argv[1]))" "$p") || {
    echo "error: $p is not installed here; install the project (pip install -e .) first" >&2; exit 2; }
  specs+=("$p==$v")
done
tmp=$(mktemp -d)   # outside the tree: the size check counts the tree without it
trap 'rm -rf "$tmp"' EXIT
platforms=()
for pl in manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64 manylinux1_x86_64; do
  platforms+=(--platform "$pl")
done
"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version "$PYVER" --implementation cp \
  "${platforms[@]}" -d "$tmp" "${specs[@]}"
"$PY" -m pip wheel -q --no-deps -w "$tmp" antlr4-python3-runtime==4.9.3
"$PY" scripts/device/check_wheels.py "$tmp"
rm -rf "$DEST"
mkdir -p "$DEST"
mv "$tmp"/*.whl "$DEST"/
ls -1 "$DEST"
du -sh "$DEST"
