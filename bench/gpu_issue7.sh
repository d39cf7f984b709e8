#!/usr/bin/env bash
# Issue 7's GPU checks in one command, for a lent GPU machine (bench/README.md, "Issue 7 on a GPU").
#
# Runs from the repository root with the machine's own python3 (torch with CUDA). Needs two folders that git
# ignores and that must travel with the working tree:
#   .comfy/  ComfyUI.tar.gz, a ComfyUI checkout's Python tree (the big tokenizer file is not needed), unpacked
#            to $COMFY_DIR (default /tmp/comfyui); or that tree itself, unpacked
#   .whl/    wheels of what that python3 lacks: diffusers (with importlib_metadata, zipp), for ComfyUI's
#            samplers torchsde and trampoline, for a ComfyUI 0.12+ comfy-aimdo and comfy-kitchen, and PyAV (for
#            ComfyUI's nodes.py) where it fits the carry limit
# Writes everything to $OUT (default bench/results/gpu-run): the gpu-marked tests (PyTorch's allocator, then
# ComfyUI's default cudaMallocAsync), bench_speed's whole comparison, profiles of one SD1.5 and one SDXL forward
# (eager, CUDA graph, channels-last), the residual-reuse run (lossy mode's speed-up and PSNR at 512 px, fp16),
# then, if time is left, the sampling part again under ComfyUI's dynamic VRAM (a ComfyUI 0.12+ server's default on
# NVIDIA GPUs; appended to speed.txt) and the torch.compile candidates (CALL_S: the seconds the whole call may
# take, default 580).
# Each step has its own time limit; a failed step is reported and the next one still runs.
set -u
export PYTHONUNBUFFERED=1
OUT=${OUT:-bench/results/gpu-run}
mkdir -p "$OUT"
status=0
nvidia-smi -L >"$OUT/gpu.txt" 2>&1 || echo "nvidia-smi failed: no NVIDIA GPU here?" >>"$OUT/gpu.txt"
cat "$OUT/gpu.txt"
SITE=${SITE:-/tmp/site}  # where the carried wheels are installed
LINKS=${LINKS:-/tmp/pk}  # holds the link `affordance` to this checkout
if ls .whl/*.whl >/dev/null 2>&1; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" .whl/*.whl ||
        { echo "== installing the carried wheels (.whl) failed: peers or ComfyUI's nodes may be missing below"; status=1; }
    export PYTHONPATH=$SITE
fi
# bench scripts import the pack as `affordance` (tests register it themselves): a link named so, outside the repo
mkdir -p "$LINKS" && ln -sfn "$PWD" "$LINKS/affordance"
export PYTHONPATH=$LINKS${PYTHONPATH:+:$PYTHONPATH}
COMFY=${COMFYUI_PATH:-.comfy}
if [ -z "${COMFYUI_PATH:-}" ] && [ -f .comfy/ComfyUI.tar.gz ]; then  # as bench/gpu_carry.sh packs it
    COMFY=${COMFY_DIR:-/tmp/comfyui}
    rm -rf "$COMFY" && mkdir -p "$COMFY" && tar -C "$COMFY" -xzf .comfy/ComfyUI.tar.gz ||
        { echo "== unpacking the carried ComfyUI (.comfy/ComfyUI.tar.gz) failed: its parts will be missing below"; status=1; }
fi

step() {  # step NAME SECONDS COMMAND...: run with a limit, output appended to $OUT/NAME.txt (or $STEP_FILE.txt)
    local name=$1 limit=$2 file="$OUT/${STEP_FILE:-$1}.txt"
    shift 2
    echo "== $name (limit ${limit}s): $*"
    [ -z "${STEP_FILE:-}" ] || echo "== $name (limit ${limit}s): $*" >>"$file"  # where it follows another step
    timeout -k 10 "$limit" "$@" >>"$file" 2>&1
    local rc=$?
    tail -n 40 "$file"
    [ "$rc" -eq 0 ] || { echo "== $name: exit $rc"; status=1; }
}

# limits sum to 590 s (most steps end well before theirs); the speed step holds the targets. The gpu tests run
# twice: with PyTorch's own allocator and with cudaMallocAsync, which ComfyUI turns on by default on CUDA
GPU_TESTS=(tests/unit/controlnet/test_graphs.py tests/unit/controlnet/test_model.py tests/unit/controlnet/test_layers.py)
step gpu-tests 40 python3 -P -m pytest -q -p no:cacheprovider --import-mode=importlib -m gpu "${GPU_TESTS[@]}"
step gpu-tests-async 40 env PYTORCH_CUDA_ALLOC_CONF=backend:cudaMallocAsync \
    python3 -P -m pytest -q -p no:cacheprovider --import-mode=importlib -m gpu "${GPU_TESTS[@]}"
step speed 300 python3 -P bench/bench_speed.py --comfyui "$COMFY" --runs 2 --comfy-dynamic-vram off ${SPEED_ARGS:-}
step profile-sd15 60 python3 -P bench/profile_forward.py --family sd15 --channels-last --top 20 ${PROFILE_ARGS:-}
step profile-sdxl 60 python3 -P bench/profile_forward.py --family sdxl --channels-last --top 20 ${PROFILE_ARGS:-}
step reuse 90 python3 -P bench/bench_reuse.py ${REUSE_ARGS:-}
# With what is left of the call: the sampling part again, under ComfyUI's dynamic VRAM where it comes on (the
# ComfyUI peer as a 0.12+ server runs it on this GPU, ours with either patcher), appended to speed.txt (the tool
# returns at most 8 files); a machine where comfy-aimdo fails hard loses only this.
left=$((${CALL_S:-580} - SECONDS))
if [ "$left" -ge 60 ]; then
    STEP_FILE=speed step speed-dynamic $((left < 150 ? left : 150)) python3 -P bench/bench_speed.py --comfyui "$COMFY" \
        --runs 2 ${SPEED_ARGS:-} --parts sampling --variants none --comfy-dynamic-vram auto
else
    echo "== speed-dynamic: skipped, ${left}s left of the call's ${CALL_S:-580}s"
fi
# Last, with whatever is left of the call (most steps end well before their limits): the torch.compile candidates
# for SD1.5 (inductor's fused kernels, alone and with CUDA graphs) beside ours eager, ours with CUDA graphs and the
# ComfyUI peer, in one more forward section (diffusers was timed in the speed step). Compiling takes a minute
# or more, so it runs only with 2 minutes left; the table prints at the end, so fewer timed calls than the speed
# step's.
left=$((${CALL_S:-580} - SECONDS))
if [ "$left" -ge 120 ]; then
    step compile "$left" python3 -P bench/bench_speed.py --comfyui "$COMFY" --parts forward --xl-size 0 \
        --compile inductor --no-diffusers ${COMPILE_ARGS:---rounds 3 --calls 10}
else
    echo "== compile: skipped, ${left}s left of the call's ${CALL_S:-580}s"
fi
exit $status
