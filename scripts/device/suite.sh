#!/usr/bin/env bash
# The GPU suite in one command (issue 14; docs/speed.md "The GPU suite"):
#
#   bash scripts/device/suite.sh [--quick] [--out DIR] [--parts a,b] [--timeout part=S] [--budget S]
#
# Writes suite.json, suite.md, suite.log, bench.json, profile.txt and details.tar.gz under
# DIR (default: $OUT if set, else runs/suite). Full mode is for one H100/H200 and stays
# within 8 minutes; --quick runs the same parts on the CPU with tiny models (CI).
# Where this Python lacks diffusers, Hydra or open_clip (the GPU machine), the wheels in
# .whl/ (bash scripts/device/build_wheels.sh, carried along) are installed first into a
# private folder put on PYTHONPATH; nothing is fetched.
set -uo pipefail
cd "$(dirname "$0")/../.."
REPO=$PWD
PY=${PYTHON:-python3}
WHEELS=${TINV_WHEELS:-$REPO/.whl}
# find_spec, not import: importing diffusers costs seconds that the suite's parts pay again
NEEDED="import importlib.util as u, sys; sys.exit(any(u.find_spec(m) is None for m in ('diffusers', 'hydra', 'omegaconf', 'open_clip')))"
if ! "$PY" -c "$NEEDED"; then
  if ! compgen -G "$WHEELS/*.whl" >/dev/null; then
    echo "error: $PY lacks diffusers/hydra/open_clip and $WHEELS holds no wheels:" \
         "run bash scripts/device/build_wheels.sh where pip works, and carry .whl" >&2
    exit 2
  fi
  SITE=${TINV_SITE:-/tmp/tinv-site}
  t0=$SECONDS
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
      --target "$SITE" "$WHEELS"/*.whl || { echo "error: installing $WHEELS/*.whl failed" >&2; exit 2; }
  export PYTHONPATH=$SITE${PYTHONPATH:+:$PYTHONPATH}
  "$PY" -c "$NEEDED" || { echo "error: still cannot import diffusers/hydra/open_clip after installing $WHEELS" >&2; exit 2; }
  echo "suite.sh: installed $(ls "$WHEELS"/*.whl | wc -l) wheels into $SITE in $((SECONDS - t0)) s" >&2
fi
export PYTHONPATH=$REPO${PYTHONPATH:+:$PYTHONPATH}
exec "$PY" -m tinv.tools.suite "$@"
