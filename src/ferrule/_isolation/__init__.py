"""Isolated mode: the protocol (protocol.py), the shared-memory wire
(wire.py), the channel (channel.py, _channel.c), the child process seen from
the host (process.py) and from inside (child.py), and IsolatedPlugin
(plugin.py)."""
