#!/usr/bin/env bash
# The GPU checks of BENCHMARKS.md in one go, within a deadline (default 480 s), what is still unmeasured first
# (two H200 sessions on 2026-12-04 measured the rest; BENCHMARKS.md, "Next GPU session"):
#   0. each convolution of the 96 px step timed alone: the rate that bounds MFU (step_traffic.py --time-convs);
#   1. the torch.compile modes side by side in one process at 96 px (default, reduce-overhead, max-autotune
#      without CUDA graphs), then the 32 px step eager and compiled (bench_gpu_mfu.py);
#   2. the product end to end on CUDA: train the demo data at 96 px, sample 64 and then 5,120 images (a job
#      long enough that sample compiles the network: 256,000 image passes), evaluate;
#   3. the product's sampling and bound compiled against eager (check_compiled_inference.py), and exact resume
#      on CUDA of a compiled --deterministic run (SIGKILL and resume against an uninterrupted run);
#   4. training throughput at 96 px in bf16: ours (eager and compiled) beside lucidrains and diffusers;
#   5. DDIM-50 sampling and the bits/dim loop, eager and compiled (bench_gpu_inference.py);
#   6. sampling beside lucidrains and diffusers: DDIM-50 and DPM-Solver++-20 (bench_sample_speed.py).
# Each check gets at most what is left of the deadline; a check cut off keeps what it printed and wrote.
# A cold torch.compile of the 96 px U-Net took 84-87 s on the H200; later processes reuse the cache.
# Usage: bash benchmarks/gpu_checks.sh [OUT_DIR] [DEADLINE_S] [TRAIN_ARGS]
# TRAIN_ARGS: options the product's runs get in checks 2 and 3 (default: none, the product's defaults).
# Python packages the GPU machine lacks (this project's dependencies, lucidrains' denoising-diffusion-pytorch
# 2.3.4 with ema-pytorch and pytorch-fid, diffusers 0.42.1 with importlib_metadata) are installed first from
# wheels in .whl/ if there.
set -uo pipefail
cd "$(dirname "$0")/.."
out=${1:-/tmp/gpu-checks}
deadline=$((SECONDS + ${2:-480}))
train_args=${3:-}
runs=$(mktemp -d)
mkdir -p "$out"
if compgen -G ".whl/*.whl" >/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site
fi
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1 DDPM_TUI_RUNS=$runs DDPM_TUI_DB=sqlite:///$runs/runs.db
status=0
step() {  # step MAX_S COMMAND...: run it for at most MAX_S seconds or what is left of the deadline
  local left=$((deadline - SECONDS)) limit=$1; shift
  ((left < limit)) && limit=$left
  if ((limit < 20)); then echo "== SKIPPED (deadline): $*"; status=1; return; fi
  echo; echo "== [$SECONDS s] $* (at most $limit s)"
  timeout -k 5 "$limit" "$@" || { echo "FAILED ($?): $*"; status=1; }
}

nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.max.sm --format=csv,noheader
step 30 python3 -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name(), 'bf16', torch.cuda.is_bf16_supported())"
step 60 python3 benchmarks/step_traffic.py --image-size 96 --batch 64 --time-convs
step 200 python3 benchmarks/bench_gpu_mfu.py --shapes 96:64 --variants compiled,compiled-ro,compiled-mac \
  --jsonl "$out/mfu.jsonl"
step 150 python3 benchmarks/bench_gpu_mfu.py --shapes 32:128 --variants eager,compiled --jsonl "$out/mfu.jsonl"
step 150 python3 -m ddpm_tui train --data demo --device cuda --image-size 96 --dim 64 --dim-mults 1,2,4,8 \
  --attention linear --batch-size 64 --lr 2e-4 --warmup-steps 50 --max-steps 300 --ckpt-every 300 \
  --sample-every 150 --eval-every 100 --name gpu-96 $train_args
cp "$runs"/1/train.log "$out/train.log" 2>/dev/null
step 40 python3 -m ddpm_tui sample 1 --device cuda --sampler ddim --steps 50 --n 64 --out "$out/samples-96.png"
step 150 python3 -m ddpm_tui sample 1 --device cuda --sampler ddim --steps 50 \
  --n 5120 --scale 1 --out "$runs/samples-5120.png"
step 60 python3 -m ddpm_tui eval 1 --device cuda --metrics nll --n 16 --nll-timesteps all
step 20 python3 -m ddpm_tui runs show 1
step 120 python3 benchmarks/check_compiled_inference.py --device cuda
step 200 python3 benchmarks/check_cuda_resume.py --steps 30 --kill-after 10 --modes deterministic \
  --train-args="--compile on $train_args"
step 240 env TORCH_LOGS=recompiles python3 benchmarks/bench_train_speed.py --device cuda --precision bf16 \
  --image-size 96 --batch-size 64 --compile default --rounds 4 --steps 10 --warmup 3 --max-wait 0 --retries 0 \
  --json "$out/train_speed_gpu.json"
step 200 python3 benchmarks/bench_gpu_inference.py --modes eager,default --jsonl "$out/inference.jsonl"
step 150 python3 benchmarks/bench_sample_speed.py --device cuda --precision bf16 --image-size 96 --n 256 --rounds 3 \
  --max-wait 0 --retries 0 --json "$out/sample_speed_gpu.json"
echo "== done at $SECONDS s"
exit $status
