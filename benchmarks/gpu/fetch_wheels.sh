#!/usr/bin/env bash
# Download the wheels in benchmarks/gpu/wheels.txt for the GPU machine (CPython 3.12, manylinux
# x86_64) into benchmarks/gpu/wheels/ (or the folder given), one version each, no dependencies
# (wheels.txt names every one needed), and print their total size: with the working tree it must
# fit the device tool's 64 MiB carry limit.
#     bash benchmarks/gpu/fetch_wheels.sh [DEST]
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
dest="${1:-$here/wheels}"
python="${PYTHON:-python3}"
mkdir -p "$dest"
grep -v -e '^#' -e '^[[:space:]]*$' "$here/wheels.txt" | while read -r req; do
    "$python" -m pip download --quiet --no-deps --only-binary=:all: \
        --python-version 3.12 --implementation cp --abi cp312 --abi none \
        --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 \
        --platform manylinux_2_27_x86_64 --platform manylinux_2_28_x86_64 --platform any \
        -d "$dest" "$req"
done

# A fallback for the build step: fastrl itself as a cp312 wheel built here, from this tree, if a
# Python 3.12 is at hand (PY312, else python3.12, else pyenv's); run.sh installs it only if
# building fastrl on the GPU machine fails, and says so. Built with pip's build isolation (it
# fetches scikit-build-core and pybind11).
py312="${PY312:-}"
if [[ -z "$py312" ]]; then
    if python3.12 -c '' 2>/dev/null; then
        py312=python3.12
    else
        py312=$(ls "$(pyenv root 2>/dev/null || echo ~/.pyenv)"/versions/3.12*/bin/python 2>/dev/null | tail -1)
    fi
fi
rm -rf "$dest/fastrl"
if [[ -n "$py312" ]]; then
    repo="$(cd "$here/../.." && pwd)"
    echo "building the fallback fastrl wheel with $py312 ($("$py312" --version 2>&1))"
    "$py312" -m pip wheel --quiet --no-deps -w "$dest/fastrl" "$repo"
    dirty=""
    if git -C "$repo" status --porcelain --untracked-files=no | grep -q .; then
        dirty=" with uncommitted changes"
    fi
    echo "$(git -C "$repo" rev-parse --short HEAD)$dirty" >"$dest/fastrl/COMMIT"
else
    echo "no Python 3.12 here (set PY312): no fallback fastrl wheel; the GPU machine must build fastrl"
fi

n=$(find "$dest" -name '*.whl' | wc -l)
echo "$n wheels in $dest, $(du -sh "$dest" | cut -f1) in all:"
find "$dest" -name '*.whl' -exec ls -l {} + | awk '{printf "  %8.1f KiB  %s\n", $5 / 1024, $9}'
