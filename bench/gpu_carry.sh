#!/usr/bin/env bash
# Prepares the two git-ignored folders that bench/gpu_issue7.sh needs beside the working tree on a lent GPU
# machine (bench/README.md, "Issue 7 on a GPU"), on this machine, before any device time is spent:
#   .comfy/  ComfyUI.tar.gz: ComfyUI's Python tree from the checkout given (no .git, caches, models or outputs),
#            compressed (a 0.33+ tree is about 29 MiB, 7 MiB packed); bench/gpu_issue7.sh unpacks it
#   .whl/    wheels the GPU machine's python3 lacks, for its Python and x86_64: diffusers (with
#            importlib_metadata and zipp), for ComfyUI's samplers torchsde and trampoline, the comfy-aimdo and
#            comfy-kitchen a ComfyUI 0.12+ pins in its requirements.txt (it imports both; comfy-kitchen as its
#            pure-Python wheel, 0.2 MiB instead of 56, whose CUDA kernels the fp16 models measured do not use),
#            and PyAV where it fits (ComfyUI's nodes.py imports it; with it the bench applies ComfyUI's control
#            with ComfyUI's own node)
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
stage=$(mktemp -d)
extra=$(mktemp -d)
trap 'rm -rf "$stage" "$extra"' EXIT
tar -C "$src" -cf - \
    --exclude=.git --exclude=__pycache__ --exclude='*.pyc' \
    --exclude=./models --exclude=./output --exclude=./input --exclude=./temp --exclude=./user \
    --exclude=./custom_nodes --exclude=./tests --exclude=./tests-unit --exclude=./script_examples . |
    tar -C "$stage" -xf -
mkdir -p "$stage/models" "$stage/custom_nodes" "$stage/input" "$stage/output" "$stage/temp"
tar -C "$stage" -czf .comfy/ComfyUI.tar.gz .

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
# a ComfyUI 0.12+ imports comfy-aimdo and comfy-kitchen: the versions its requirements.txt pins
pinned() { [ ! -f "$src/requirements.txt" ] || sed -n "s/^$1==\([^[:space:]#;]*\).*/\1/p" "$src/requirements.txt" | head -n 1; }
aimdo=$(pinned comfy-aimdo)
kitchen=$(pinned comfy-kitchen)
[ -z "$aimdo" ] || wheels+=("comfy-aimdo==$aimdo")
download .whl "${wheels[@]}"
if [ -n "$kitchen" ]; then
    # its pure-Python wheel (the platform one, with CUDA kernels, is about 56 MiB), else the platform one
    $pip download --quiet --no-deps --only-binary=:all: --python-version "$pyver" --implementation cp \
        --platform any -d .whl "comfy-kitchen==$kitchen" || download .whl "comfy-kitchen==$kitchen"
fi

tree=$(git ls-files -z | du -cb --files0-from=- | tail -1 | cut -f1)
carried() { du -sb .comfy .whl | awk '{s += $1} END {print s}'; }
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
