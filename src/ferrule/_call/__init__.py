"""The call path: the call contract (contract.py), argument checks
(checks.py), status codes as exceptions (status.py), the cffi marshal and
host table (marshal.py, table.py, gate.py), PluginFunction (function.py),
and the optional C accelerator (accelerator.py, _speedups.c, host_table.c,
gate.c)."""
