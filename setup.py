"""Builds the three optional C extensions; everything else is in pyproject.toml.

optional=True: without a C compiler or Python headers the install still
succeeds. ferrule then calls plugins on its cffi path (about 100x slower per
call), isolated mode's channel and Library's functions run on cffi too, and
the first plugin loaded says so in an AcceleratorWarning. A release build sets FERRULE_REQUIRE_C=1
(the cibuildwheel configuration does) so that a failed compile fails the
build instead of shipping a slow wheel."""

import os

from setuptools import Extension, setup

CFLAGS = ["-O2", "-std=c11", "-fvisibility=hidden"]
OPTIONAL = os.environ.get("FERRULE_REQUIRE_C", "") in ("", "0")

setup(
    ext_modules=[
        Extension(
            "ferrule._call._speedups",
            sources=["src/ferrule/_call/_speedups.c", "src/ferrule/_call/host_table.c", "src/ferrule/_call/gate.c",
                     "src/ferrule/_call/structs.c", "src/ferrule/_call/services.c"],
            depends=["src/ferrule/_call/speedups.h", "src/ferrule/_call/_abi_types.h", "src/ferrule/include/ferrule.h"],
            include_dirs=["src/ferrule/include"],
            extra_compile_args=CFLAGS,
            optional=OPTIONAL,
        ),
        Extension(
            "ferrule._loader._ccall",
            sources=["src/ferrule/_loader/_ccall.c"],
            depends=["src/ferrule/_call/_abi_types.h"],
            include_dirs=["src/ferrule/_call"],
            extra_compile_args=CFLAGS,
            optional=OPTIONAL,
        ),
        Extension(
            "ferrule._isolation._channel",
            sources=["src/ferrule/_isolation/_channel.c"],
            extra_compile_args=CFLAGS,
            optional=OPTIONAL,
        ),
    ]
)
