#!/usr/bin/env bash
# The GPU checks in one go (about a minute on one H200): the CUDA tests, the device audit (ops off the GPU,
# synchronisations by caller) and the benchmark against both references on the GPU.
#   bash benchmarks/cuda_checks.sh OUT_DIR
# The references are installed on first use (benchmarks/reference.py); MEMORIA_REFERENCE_DIR points at a copy where
# the GPU machine has no package registry.
set -u
out=${1:-cuda-results}
mkdir -p "$out"
export PYTHONUNBUFFERED=1
python=${PYTHON:-python3}
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee "$out/gpu.txt"
$python -c "import sys, torch; print(sys.version.split()[0], torch.__version__, torch.cuda.get_device_name())" \
    | tee -a "$out/gpu.txt"
timeout "${TEST_SECONDS:-150}" $python -m pytest -q -rfEs -m cuda -p no:cacheprovider \
    tests/test_memoria.py tests/test_differential.py tests/test_rows.py tests/test_forms.py 2>&1 | tee "$out/pytest_cuda.log" | tail -5
timeout "${AUDIT_SECONDS:-90}" $python -m benchmarks.device_audit --device cuda --profile --json "$out/audit.json" 2>&1 \
    | tee "$out/audit.log"
timeout "${BENCH_SECONDS:-240}" $python -m benchmarks.benchmark --device cuda \
    --configs "${CONFIGS:-gpt2,enwik8,sort,sweep}" --warmup "${WARMUP:-100}" --steps "${STEPS:-20}" \
    --ref-limit "${REF_LIMIT:-3200}" --json "$out/results_cuda.json" 2>&1 | tee "$out/bench.log" | grep -v "] step "
