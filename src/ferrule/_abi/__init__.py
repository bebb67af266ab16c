"""The ABI view: the declarations generated from ferrule.h (cdef.py, ffi.py),
the table of value types (types.py), the signature grammar (signature.py),
and descriptor validation (descriptor.py) into a plugin spec (spec.py)."""
