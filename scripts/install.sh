#!/usr/bin/env bash
# Installs the project into ./.venv (or $RECSYS_VENV) on a fresh Linux machine.
#   scripts/install.sh            library + CLI, CPU kernels
#   scripts/install.sh --test     ... plus everything the test suite needs
#   scripts/install.sh --gpu      CUDA kernels (requirements/gpu.txt) instead of the CPU ones
set -euo pipefail
cd "$(dirname "$0")/.."

extras=""
kernels=requirements/cpu.txt
for arg in "$@"; do
  case "$arg" in
    --test) extras="test" ;;
    --gpu) kernels=requirements/gpu.txt ;;
    *) echo "install.sh: unknown option '$arg' (use --test and/or --gpu)" >&2; exit 2 ;;
  esac
done

venv=${RECSYS_VENV:-.venv}
python=${PYTHON:-python3.11}
command -v "$python" >/dev/null || python=python3
if [ ! -x "$venv/bin/python" ]; then
  "$python" -m venv "$venv"
fi
pip=("$venv/bin/python" -m pip install --disable-pip-version-check --progress-bar off -q)
# Some machines' pip configuration names local index folders that may be empty; pip warns once per
# package about them. Keep real errors, drop that noise, and keep pip's exit status.
quiet() { grep -v -e "is neither a file nor a directory" -e "torchrec 1.8.0 requires fbgemm-gpu" \
  -e "dependency resolver does not currently take into account" >&2 || true; }

# Order matters: kernels first, then torchrec without its (CUDA) dependencies, then us.
"${pip[@]}" -r "$kernels" 2> >(quiet)
"${pip[@]}" --no-deps -r requirements/torchrec.txt 2> >(quiet)
if [ -n "$extras" ]; then
  "${pip[@]}" -e ".[$extras]" 2> >(quiet)
else
  "${pip[@]}" -e . 2> >(quiet)
fi
if [ "$kernels" = requirements/gpu.txt ]; then
  # onnxruntime-gpu is a different distribution of the same `onnxruntime` module: swap it in
  # after setup.cfg's CPU pin (requirements/gpu-serving.txt; untested on this project's CI).
  "$venv/bin/python" -m pip uninstall -y -q onnxruntime
  "${pip[@]}" -r requirements/gpu-serving.txt 2> >(quiet)
fi
"$venv/bin/python" - <<'PY'
import fbgemm_gpu, torch, torchrec  # noqa: F401  fails loudly if the kernel set does not load
print(f"installed: torch {torch.__version__}, torchrec {torchrec.__version__}")
PY
