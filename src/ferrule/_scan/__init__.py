"""Scanning: ``scan`` and the blocklist (scan.py), the cache file
(cache.py), and the worker process that reads descriptors (worker.py)."""
