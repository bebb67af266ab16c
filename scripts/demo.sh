#!/usr/bin/env bash
# Set up on a fresh machine, build the example plugins (Rust and C) and run
# the two example hosts: examples/host.py (plugin functions) and the text
# pipeline of examples/pipeline (host-defined interfaces and a service).
set -euo pipefail
export PIP_ROOT_USER_ACTION=ignore
cd "$(dirname "$0")/.."
python3 -m pip install --quiet --disable-pip-version-check -e .
cargo build --release --quiet -p greeter -p textkit
mkdir -p build
CFLAGS="-shared -fPIC -fvisibility=hidden -O2 -std=c99 -Wall -Wextra -pedantic -Werror -I sdk/c/include"
cc $CFLAGS examples/c_plugin/calc.c -lm -o build/libcalc.so
cc $CFLAGS -I examples/pipeline/generated examples/pipeline/c_plugin/textkit.c -o build/libtextkit_c.so
python3 examples/host.py target/release/libgreeter.so build/libcalc.so
echo
python3 examples/pipeline/app.py target/release/libtextkit.so build/libtextkit_c.so
