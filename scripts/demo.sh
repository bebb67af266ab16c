#!/usr/bin/env bash
# Set up on a fresh machine, build the example plugins (Rust and C) and run
# the example host script that loads and calls them.
set -euo pipefail
export PIP_ROOT_USER_ACTION=ignore
cd "$(dirname "$0")/.."
python3 -m pip install --quiet --disable-pip-version-check -e .
cargo build --release --quiet -p greeter
mkdir -p build
cc -shared -fPIC -fvisibility=hidden -O2 -std=c99 -Wall -Wextra -pedantic -Werror \
   -I sdk/c/include examples/c_plugin/calc.c -lm -o build/libcalc.so
python3 examples/host.py target/release/libgreeter.so build/libcalc.so
