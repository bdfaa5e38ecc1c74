#!/usr/bin/env bash
# GPU checks and the ViT-L/16 MFU sweep of issue #8 (docs/benchmarks.md), in one go so that a
# lent GPU is used for one call. Usage: bash tools/bench_gpu.sh [OUTDIR]
set -uo pipefail
out=${1:-gpu_out}
mkdir -p "$out"
export PYTHONUNBUFFERED=1
nvidia-smi -L
python3 -c "import torch; print('torch', torch.__version__, torch.version.cuda)"
python3 tools/check_gpu.py 2>&1 | tee "$out/check_gpu.txt"
L="--device cuda --model vit_large --img 256 --frames 16 --pred-depth 12 --pred-dim 384 --pred-heads 12 --dtype bf16"
run() { python3 tools/bench_step.py $L "$@" 2>&1 | tee -a "$out/bench_step.txt"; }
run --batch 32 --warmup 2 --steps 5                                # eager
run --batch 32 --warmup 2 --steps 5 --checkpointing                # memory-bound sizes
run --batch 64 --warmup 4 --steps 5 --compile                      # cold: new token counts every step
run --batch 64 --warmup 4 --steps 5 --compile --sdpa flash         # cold, no cuDNN attention plans
run --batch 64 --warmup 4 --steps 5 --compile --mask-pool 2        # steady state of a long run
# Untried lever for MFU (last: its GEMM search can take minutes; the rows above are saved first)
run --batch 64 --warmup 6 --steps 5 --compile --compile-mode max-autotune-no-cudagraphs --mask-pool 2
grep -h -E "^(command|clips/s|ms per|peak|MFU)" "$out/bench_step.txt"
# Decode threads on the GPU host's cores (one process): how far clip-level threads scale past 2.
python3 tools/bench_data.py --clips 200 --backends pyav --threads 1 4 8 16 --batch 32 2>&1 | tee "$out/bench_data.txt"
