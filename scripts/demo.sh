#!/usr/bin/env bash
# Set up on a fresh machine, build the example plugins (Rust, C and C++) and
# run the example hosts: examples/host.py (plugin functions), examples/async_host.py
# (the same, awaited), the text
# pipeline of examples/pipeline (host-defined interfaces and a service), in
# process and isolated, the C++ wordstat plugin, and the Rust hosts:
# examples/rust_host and the examples/app workspace (interfaces declared in Rust).
set -euo pipefail
export PIP_ROOT_USER_ACTION=ignore
cd "$(dirname "$0")/.."
bash scripts/system-deps.sh
python3 -m pip install --quiet --disable-pip-version-check -e .
cargo build --release --quiet -p greeter -p textkit -p rust-host -p app -p app-plugin
mkdir -p build
CFLAGS="-shared -fPIC -fvisibility=hidden -O2 -std=c99 -Wall -Wextra -pedantic -Werror -I sdk/c/include"
cc $CFLAGS examples/c_plugin/calc.c -lm -o build/libcalc.so
cc $CFLAGS -I examples/pipeline/generated examples/pipeline/c_plugin/textkit.c -o build/libtextkit_c.so
c++ -std=c++17 -Wall -Wextra -Werror -shared -fPIC -fvisibility=hidden -O2 -I sdk/c/include \
    -Wl,--version-script=sdk/c/include/ferrule.map examples/cpp_plugin/wordstat.cpp -o build/libwordstat.so
python3 examples/host.py target/release/libgreeter.so build/libcalc.so
echo
echo "== the same plugin binaries, hosted by a Rust program (examples/rust_host), with the pipeline's Rust plugin"
target/release/rust-host target/release/libgreeter.so build/libcalc.so target/release/libtextkit.so
echo
echo "== a Rust app and its Rust plugin, the interfaces declared in Rust only (examples/app)"
target/release/app target/release/libapp_plugin.so
echo
echo "== the same two plugins awaited from one asyncio event loop"
python3 examples/async_host.py target/release/libgreeter.so build/libcalc.so
echo
python3 examples/pipeline/app.py target/release/libtextkit.so build/libtextkit_c.so
echo
echo "== the same pipeline, each plugin in a child process of its own (--sandbox: also sandboxed)"
python3 examples/pipeline/app.py --isolated target/release/libtextkit.so build/libtextkit_c.so | tail -n 2
echo
python3 examples/cpp_plugin/use.py build/libwordstat.so
