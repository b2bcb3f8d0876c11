#!/usr/bin/env bash
# The GPU check of issue 19, one command on the GPU machine (docs/gpu.md, benchmarks/gpu/README.md):
# install the carried wheels, build fastrl, run the CUDA tests and the test files that touch devices,
# then the GPU benchmarks (bench_gpu.py). Everything goes to one folder: log.txt, gpu.json and the
# PNGs. Each step has a time budget (timeout); together they stay under 8 minutes.
#
#     bash benchmarks/gpu/run.sh [OUTDIR]            # OUTDIR defaults to $OUT (the device tool's)
#     GPU_DRY_RUN=1 bash benchmarks/gpu/run.sh DIR   # the same steps on a CPU machine: installs and
#                                                    # builds only checked, CUDA parts skipped, tiny sizes
# Environment: PYTHON (default python3), GPU_WHEELS (default benchmarks/gpu/wheels),
# GPU_STEPS (default "wheels build cuda-tests device-tests bench": a rerun may name fewer).
# Exit status: 0 if every step passed, 1 otherwise (the steps after a failed one still run).
set -uo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
out="${1:-${OUT:-}}"
if [[ -z "$out" ]]; then
    echo "usage: bash benchmarks/gpu/run.sh OUTDIR (or set OUT)" >&2
    exit 2
fi
mkdir -p "$out" || exit 2
out="$(cd "$out" && pwd)"
cd "$repo" || exit 2
exec > >(tee "$out/log.txt") 2>&1
tee_pid=$!
trap 'exec >&- 2>&-; wait $tee_pid' EXIT  # log.txt complete before the script returns

PY="${PYTHON:-python3}"
DRY="${GPU_DRY_RUN:-0}"
WHEELS="${GPU_WHEELS:-$repo/benchmarks/gpu/wheels}"
STEPS=" ${GPU_STEPS:-wheels build cuda-tests device-tests bench} "
# -P / PYTHONSAFEPATH: never import the source folder fastrl/ of the repository root (it has no _core)
export PYTHONUNBUFFERED=1 PYTHONSAFEPATH=1
failed=()
start=$SECONDS
[[ "$DRY" == 1 ]] && mode="dry run (CPU machine: installs and builds checked, CUDA parts skipped)" || mode="GPU run"

export PY DRY WHEELS out

# step NAME BUDGET_SECONDS FUNCTION: run the (exported) function under a timeout, log time and outcome
step() {
    local name=$1 budget=$2 fn=$3 t0=$SECONDS rc
    echo "== $name (budget ${budget}s)"
    export -f "$fn"
    timeout -k 10 "$budget" bash -o pipefail -c "$fn"
    rc=$?
    [[ $rc == 124 || $rc == 137 ]] && echo "== $name: TIMEOUT after ${budget}s"
    echo "== $name: rc=$rc in $((SECONDS - t0))s"
    [[ $rc == 0 ]] || failed+=("$name")
    return $rc
}
wanted() { [[ "$STEPS" == *" $1 "* ]]; }

echo "fastrl GPU check, $mode: $(date -u '+%Y-%m-%d %H:%M:%S UTC'), $(uname -m), $(nproc) CPUs, output in $out"
echo "repository $repo at $(git -C "$repo" rev-parse --short HEAD 2>/dev/null || echo '?')"
"$PY" -c 'import sys, torch; print(f"Python {sys.version.split()[0]}, torch {torch.__version__}, CUDA {torch.version.cuda}, cuda available: {torch.cuda.is_available()}")' \
    || { echo "ERROR: $PY cannot import torch"; exit 1; }
command -v nvidia-smi >/dev/null && nvidia-smi -L
cuda=$("$PY" -c 'import torch; print(int(torch.cuda.is_available()))')
if [[ "$cuda" != 1 ]]; then
    if [[ "$DRY" == 1 ]]; then
        echo "SKIP (no CUDA): torch sees no GPU here; every CUDA part below is skipped"
    else
        echo "ERROR: torch sees no CUDA device on the GPU run; the CUDA tests and benchmarks will skip"
        failed+=("cuda-device")
    fi
fi

# ---------------------------------------------------------------------------- wheels
install_wheels() {
    local n
    n=$(find "$WHEELS" -maxdepth 1 -name '*.whl' 2>/dev/null | wc -l)
    if [[ $n == 0 ]]; then
        if [[ "$DRY" == 1 ]]; then
            echo "SKIP wheel install (dry run): no wheels in $WHEELS (bash benchmarks/gpu/fetch_wheels.sh fetches them)"
            return 0
        fi
        echo "ERROR: no wheels in $WHEELS: gymnasium is missing (fetch them with benchmarks/gpu/fetch_wheels.sh and carry the folder)"
        return 1
    fi
    echo "$n wheels in $WHEELS ($(du -sh "$WHEELS" | cut -f1)):"
    ls "$WHEELS"
    local pin name missing=0
    for pin in $(grep -v -e '^#' -e '^[[:space:]]*$' benchmarks/gpu/wheels.txt); do
        name=$(echo "${pin%%==*}" | tr 'A-Z-' 'a-z_')  # wheel file names: lower case here, '_' for '-'
        if ! ls "$WHEELS" | tr 'A-Z-' 'a-z_' | grep -q "^${name}_${pin##*==}_"; then
            echo "ERROR: no wheel for $pin in $WHEELS"
            missing=1
        fi
    done
    if [[ "$DRY" == 1 ]]; then
        echo "SKIP wheel install (dry run): the wheels are for CPython 3.12 on the GPU machine"
        return $missing
    fi
    # resolved against what the machine has (numpy, cloudpickle, ...) and the folder; MinAtar alone
    # without its requirements (pandas, seaborn, ... pins that the machine's own versions need not meet)
    "$PY" -m pip install -q --no-index --no-cache-dir --find-links "$WHEELS" gymnasium Box2D pygame-ce ale-py \
        && "$PY" -m pip install -q --no-index --no-cache-dir --no-deps --find-links "$WHEELS" MinAtar \
        || return 1
    "$PY" -c 'import gymnasium; print("gymnasium", gymnasium.__version__)' || return 1
    if "$PY" -c 'import gymnasium as gym; gym.make("LunarLander-v3").close()'; then
        echo "LunarLander-v3: available"
    else
        echo "SKIP LunarLander-v3: it cannot be made here (Box2D); CartPole-v1 stands in for it"
    fi
    return $missing
}
wanted wheels && step wheels 25 install_wheels

# ---------------------------------------------------------------------------- build
build() {
    local where
    if where=$("$PY" -c 'import fastrl._core, fastrl; print(fastrl.__file__)' 2>/dev/null) && [[ "$DRY" == 1 ]]; then
        echo "SKIP build (dry run): fastrl is already importable ($where)"
        return 0
    fi
    if "$PY" -m pip install -q --no-build-isolation --no-deps --no-cache-dir .; then
        "$PY" -c 'import fastrl, fastrl._core; print("built and installed:", fastrl.__file__)'
        return
    fi
    local whl
    whl=$(find "$WHEELS/fastrl" -name 'fastrl-*.whl' 2>/dev/null | head -1)
    if [[ -n "$whl" ]]; then  # the step still fails: the build must be fixed, but the rest can run
        echo "FALLBACK: building fastrl failed; installing the carried $(basename "$whl") (built from $(cat "$WHEELS/fastrl/COMMIT" 2>/dev/null || echo '?'); this tree is at $(git rev-parse --short HEAD 2>/dev/null || echo '?'))"
        "$PY" -m pip install -q --no-deps --no-cache-dir --force-reinstall "$whl" \
            && "$PY" -c 'import fastrl, fastrl._core; print("installed the fallback:", fastrl.__file__)'
    fi
    return 1
}
wanted build && step build 90 build

# ---------------------------------------------------------------------------- tests
# every cuda-marked test; on the GPU run a summary with no "passed" means CUDA was not used
cuda_tests() {
    local log rc xdist=()
    log=$(mktemp)
    [[ "$DRY" != 1 ]] && "$PY" -c 'import xdist' 2>/dev/null && xdist=(-n 4)
    "$PY" -m pytest -p no:cacheprovider -o faulthandler_timeout=30 -m cuda -q -rs "${xdist[@]}" tests 2>&1 | tee "$log"
    rc=${PIPESTATUS[0]}
    if [[ "$DRY" != 1 ]] && ! tail -1 "$log" | grep -q passed; then
        echo "ERROR: no cuda test passed"
        rc=1
    fi
    rm -f "$log"
    return $rc
}
wanted cuda-tests && step cuda-tests 60 cuda_tests

# the test files that touch devices (they name cuda or a device), the cuda tests already run; all
# collected in the dry run (running them is the CPU suite's job there)
device_tests() {
    local files xdist=()
    files=$(grep -l -E 'cuda|device' tests/test_*.py | grep -v test_gpu_script.py | tr '\n' ' ')
    echo "test files that touch devices: $files"
    if [[ "$DRY" == 1 ]]; then
        # shellcheck disable=SC2086
        "$PY" -m pytest -p no:cacheprovider --collect-only -q -m 'not slow and not cuda' $files | tail -1
        return "${PIPESTATUS[0]}"
    fi
    "$PY" -c 'import xdist' 2>/dev/null && xdist=(-n 8)
    # shellcheck disable=SC2086
    "$PY" -m pytest -p no:cacheprovider -o faulthandler_timeout=30 -q -m 'not slow and not cuda' "${xdist[@]}" $files
}
wanted device-tests && step device-tests 70 device_tests

# ---------------------------------------------------------------------------- benchmarks
bench() {
    local dry=()
    [[ "$DRY" == 1 ]] && dry=(--dry-run)
    "$PY" benchmarks/gpu/bench_gpu.py --out "$out" "${dry[@]}"
}
wanted bench && step bench 225 bench

echo "files in $out: $(cd "$out" && ls | tr '\n' ' ')"
echo "summary (the SKIP, CHECK, FALLBACK and ERROR lines above):"
grep -E '^(SKIP|CHECK|FALLBACK|ERROR)' "$out/log.txt" | sed 's/^/  /'
[[ "$DRY" == 1 ]] && echo "  dry run: not a GPU result; docs/gpu.md says how to run the check on the GPU machine"
if [[ ${#failed[@]} -gt 0 ]]; then
    echo "GPU check ($mode) FAILED steps: ${failed[*]}; $((SECONDS - start))s in all"
    exit 1
fi
echo "GPU check ($mode) passed: $((SECONDS - start))s in all"
