"""The sandbox for plugins that are not trusted: the caller's policy, what
the kernel gave (policy.py), how the host starts the child in it (launch.py)
and the child's seccomp filter (seccomp.py)."""

from .policy import PROTECTIONS, Sandbox, SandboxReport

__all__ = ["PROTECTIONS", "Sandbox", "SandboxReport"]
