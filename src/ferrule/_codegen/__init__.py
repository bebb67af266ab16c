"""Code generation from interface declarations: ``ferrule generate`` and its
lock file (generate.py), and the Rust, C and Python back ends."""
