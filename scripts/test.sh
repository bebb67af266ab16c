#!/usr/bin/env bash
# Set up on a fresh machine and run the whole test suite. The tests build
# every fixture plugin (cargo, cc) once per session.
set -euo pipefail
export PIP_ROOT_USER_ACTION=ignore
cd "$(dirname "$0")/.."
bash scripts/system-deps.sh
python3 -m pip install --quiet --disable-pip-version-check -e '.[test]'
python3 -m pytest "$@"
