"""Builds the optional C accelerator; everything else is in pyproject.toml.

optional=True: without a C compiler or Python headers the install still
succeeds, and ferrule runs on its pure-Python (cffi) call path."""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "ferrule._speedups",
            sources=["src/ferrule/_speedups.c"],
            include_dirs=["sdk/c/include"],
            extra_compile_args=["-O2", "-std=c11"],
            optional=True,
        )
    ]
)
