#!/usr/bin/env bash
# Installs the hub SDKs of the model download Job (roles/model_storage/files/download_model.py) into one Python,
# then checks that they import at the pinned versions. One script builds both images (images/README.md):
#   Containerfile (FROM python:3.11-slim):  install.sh --venv /opt/venv
#   local test image (Debian bookworm):     install.sh --venv /opt/venv --constraints constraints.txt
# Safe to run again: pinned installs of what is already there change nothing.
set -euo pipefail

# roles/model_storage/defaults/main.yml: model_storage_modelscope_version.
readonly MODELSCOPE_VERSION=1.40.2
# The huggingface_hub the project's venv resolves beside vLLM 0.32 and transformers (requirements/constraints.txt):
# the hosts platform's model_download module is tested with it, so the Job downloads with the same SDK.
readonly HUGGINGFACE_HUB_VERSION=2.4.0
readonly PIP_VERSION=25.3

python=python3
venv=""
constraints=""

usage() {
  cat <<'TEXT'
usage: install.sh [--python PYTHON | --venv DIR] [--constraints FILE]
  --python        the Python to install into (default: python3 on PATH)
  --venv          create DIR as a venv if missing and install into it
  --constraints   a pip constraints file for every install (the local image: requirements/constraints.txt)
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
      --python) python=$2 ;;
      --venv) venv=$2 ;;
      --constraints) constraints=$2 ;;
      *) usage >&2; die "unknown option $1" ;;
    esac
    shift 2
  done
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

verify() {
  "$python" - "$MODELSCOPE_VERSION" "$HUGGINGFACE_HUB_VERSION" <<'PY'
import sys

import huggingface_hub
import modelscope

found = {"modelscope": modelscope.__version__, "huggingface_hub": huggingface_hub.__version__}
print(f"llmops model-download: Python {sys.version.split()[0]}, " + ", ".join(f"{n} {v}" for n, v in found.items()))
wrong = [f"{name} {found[name]} (want {want})" for name, want in zip(found, sys.argv[1:]) if found[name] != want]
sys.exit("install.sh: wrong versions: " + ", ".join(wrong) if wrong else 0)
PY
}

main() {
  parse_args "$@"
  [ -z "$venv" ] || make_venv
  pip_install "modelscope==$MODELSCOPE_VERSION" "huggingface_hub==$HUGGINGFACE_HUB_VERSION"
  verify || die "modelscope and huggingface_hub must import at the pinned versions"
}

main "$@"
