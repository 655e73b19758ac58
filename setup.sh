#!/usr/bin/env bash
# One-time setup on a fresh Debian/Ubuntu machine with Python >= 3.10: Debian's Fashion-MNIST
# files, a virtual environment in .venv, and this package with its train, tfds, test and notebook
# extras.
# Root is needed only for apt-get: as a normal user it runs through sudo. Idempotent.
set -euo pipefail
cd "$(dirname "$0")"
PYTHON=${PYTHON:-python3}

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

apt_packages=()
[ -d /usr/share/datasets/fashion-mnist ] || apt_packages+=(dataset-fashion-mnist)
"$PYTHON" -c "import venv, ensurepip" 2>/dev/null || apt_packages+=(python3-venv)
if [ ${#apt_packages[@]} -gt 0 ]; then
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${apt_packages[@]}"
fi

[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
stamp=.venv/.lars_jax_installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  .venv/bin/python -m pip install -q --upgrade pip "setuptools>=77"  # pyproject's build requirement
  .venv/bin/python -m pip install -q -e ".[train,tfds,test,notebooks]"
  touch "$stamp"
fi
