#!/usr/bin/env bash
# Prepares the two git-ignored folders that bench/gpu_issue7.sh needs beside the working tree on a lent GPU
# machine (bench/README.md, "Issue 7 on a GPU"), on this machine, before any device time is spent:
#   .comfy/  ComfyUI's Python tree, copied from the checkout given (no .git, caches, models or outputs)
#   .whl/    wheels the GPU machine's python3 lacks, for its Python and x86_64: diffusers (with
#            importlib_metadata and zipp), for ComfyUI's samplers torchsde and trampoline, and PyAV where it fits
#            (ComfyUI's nodes.py imports it; with it the bench applies ComfyUI's control with ComfyUI's own node)
# Usage: bash bench/gpu_carry.sh /path/to/ComfyUI   (or with COMFYUI_PATH set)
# Environment: GPU_PYTHON (default 3.12, the device machines' python3), PIP (default: python3 -m pip).
# Both folders together must stay under the device tool's 64 MiB carry limit; the sizes are printed.
set -euo pipefail
cd "$(dirname "$0")/.."
src=${1:-${COMFYUI_PATH:-}}
if [ -z "$src" ] || [ ! -f "$src/comfy/controlnet.py" ]; then
    echo "usage: bash bench/gpu_carry.sh /path/to/ComfyUI (a checkout holding comfy/controlnet.py); got '${src}'" >&2
    exit 2
fi
pyver=${GPU_PYTHON:-3.12}
pip=${PIP:-python3 -m pip}
wheels=(diffusers==0.42.1 importlib_metadata==10.2.0 zipp==4.1.2 torchsde==0.2.6 trampoline==0.1.2)
optional=av==19.0.2  # about 33 MiB: carried only if everything stays under the limit with it
limit=$((64 * 1048576))

rm -rf .comfy .whl
mkdir -p .comfy .whl
tar -C "$src" -cf - \
    --exclude=.git --exclude=__pycache__ --exclude='*.pyc' \
    --exclude=./models --exclude=./output --exclude=./input --exclude=./temp --exclude=./user \
    --exclude=./custom_nodes --exclude=./tests --exclude=./tests-unit --exclude=./script_examples . |
    tar -C .comfy -xf -
mkdir -p .comfy/models .comfy/custom_nodes .comfy/input .comfy/output .comfy/temp

platforms=()
for tag in manylinux_2_28 manylinux_2_27 manylinux_2_17 manylinux2014 manylinux1; do
    platforms+=(--platform "${tag}_x86_64")
done
# pure-Python wheels match any platform; the platform tags are for any that are not
download() {  # download DIR REQUIREMENT...
    local dir=$1
    shift
    $pip download --quiet --no-deps --only-binary=:all: --python-version "$pyver" --implementation cp \
        "${platforms[@]}" --platform any -d "$dir" "$@"
}
download .whl "${wheels[@]}"

tree=$(git ls-files -z | du -cb --files0-from=- | tail -1 | cut -f1)
carried() { du -sb .comfy .whl | awk '{s += $1} END {print s}'; }
extra=$(mktemp -d)
trap 'rm -rf "$extra"' EXIT
if download "$extra" "$optional"; then
    size=$(du -sb "$extra" | cut -f1)
    if [ $(($(carried) + tree + size)) -lt "$limit" ]; then
        mv "$extra"/* .whl/
    else
        echo "left out $optional ($((size / 1048576)) MiB): over the carry limit with it; the bench then applies" \
            "ComfyUI's control with our apply_control (bench/README.md)"
    fi
else
    echo "left out $optional: pip could not download it; the bench then applies ComfyUI's control with our apply_control"
fi

du -sh .comfy .whl
total=$(carried)
echo "carry: $((total / 1048576)) MiB, tracked tree $((tree / 1048576)) MiB (the device tool's limit: 64 MiB in all)"
if [ $((total + tree)) -ge "$limit" ]; then
    echo "too big for the device tool's carry limit" >&2
    exit 1
fi
