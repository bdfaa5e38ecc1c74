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
for b in ${BATCHES:-8 16 32}; do
  python3 tools/bench_step.py $L --batch "$b" --steps 5 --warmup 2 2>&1 | tee -a "$out/step_eager.txt"
done
for b in ${COMPILE_BATCHES:-16 32}; do
  python3 tools/bench_step.py $L --batch "$b" --steps 5 --warmup 4 --compile 2>&1 | tee -a "$out/step_compile.txt"
done
python3 tools/bench_step.py $L --batch 32 --steps 5 --warmup 2 --checkpointing 2>&1 | tee -a "$out/step_ckpt.txt"
grep -h -E "^(config|clips/s|ms per|peak|model FLOPs|MFU)" "$out"/step_*.txt
