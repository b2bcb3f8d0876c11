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
n=$(find "$dest" -name '*.whl' | wc -l)
echo "$n wheels in $dest, $(du -sh "$dest" | cut -f1) in all:"
ls -l "$dest"/*.whl | awk '{printf "  %8.1f KiB  %s\n", $5 / 1024, $9}'
