#!/usr/bin/env bash
# The GPU checks of BENCHMARKS.md in one go, about 5 minutes on one H100:
#   1. training throughput at 96x96, bf16 and fp32, ours beside lucidrains' (bench_train_speed.py);
#   2. bits/dim throughput beside improved-diffusion's calc_bpd_loop (bench_bpd.py);
#   3. the product end to end on CUDA: train the demo data at 96 px in bf16, sample, evaluate;
#   4. data parallelism: 1 vs 2 GPUs at the same global batch (when there are two), and --deterministic's cost;
#   5. exact resume on CUDA: SIGKILL and resume against an uninterrupted run, default kernels and --deterministic.
# Usage: bash benchmarks/gpu_checks.sh IMPROVED_DIFFUSION_CHECKOUT [OUT_DIR]
# lucidrains' denoising-diffusion-pytorch 2.3.4 (and ema-pytorch, pytorch-fid) must be importable.
set -uo pipefail
cd "$(dirname "$0")/.."
improved_diffusion=$1
out=${2:-/tmp/gpu-checks}
runs=$(mktemp -d)
mkdir -p "$out"
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1 DDPM_TUI_RUNS=$runs DDPM_TUI_DB=sqlite:///$runs/runs.db
status=0
step() { echo; echo "== $*"; "$@" || { echo "FAILED ($?): $*"; status=1; }; }

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
step python3 -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name(), 'bf16', torch.cuda.is_bf16_supported())"

for precision in bf16 fp32; do
  step python3 benchmarks/bench_train_speed.py --device cuda --precision "$precision" --image-size 96 \
    --batch-size 64 --rounds 6 --steps 10 --warmup 5 --max-wait 0 --retries 0 --json "$out/train_speed_gpu.json"
done
step python3 benchmarks/bench_bpd.py --improved-diffusion "$improved_diffusion" --device cuda --batch 64 \
  --max-batch 1024 --rounds 3

mkdir -p "$runs"
step python3 -m ddpm_tui train --data demo --device cuda --precision bf16 --image-size 96 --dim 64 \
  --dim-mults 1,2,4,8 --attention linear --batch-size 64 --lr 2e-4 --warmup-steps 50 --max-steps 600 \
  --ckpt-every 300 --sample-every 300 --eval-every 100 --name gpu-bf16-96
step python3 -m ddpm_tui runs list
step python3 -m ddpm_tui sample 1 --device cuda --sampler ddim --steps 50 --n 64 --out "$out/samples-96.png"
step python3 -m ddpm_tui eval 1 --device cuda --metrics nll,ssim --n 64 --nll-timesteps all
step python3 -m ddpm_tui runs show 1
cp "$runs"/1/train.log "$out/train.log"
if [ "$(nvidia-smi -L | wc -l)" -ge 2 ]; then  # data-parallel scaling, same global batch, and --deterministic's cost
  step python3 benchmarks/bench_ddp.py --device cuda --gpus 2 --image-size 96 --global-batch 128 --steps 60 \
    --warmup 10 --rounds 2 --deterministic
else
  step python3 benchmarks/bench_ddp.py --device cuda --gpus 1 --image-size 96 --global-batch 64 --steps 60 \
    --warmup 10 --rounds 2 --deterministic   # one GPU: only --deterministic's cost
fi
step python3 benchmarks/check_cuda_resume.py --steps 60 --kill-after 20
cp "$(ls "$runs"/1/samples/*.png | tail -1)" "$out/train-grid-96.png"
exit $status
