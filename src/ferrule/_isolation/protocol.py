"""The protocol of isolated mode, shared by the host and the child: the
message kinds, the two directions, and the layout of the channel head.

One memfd holds both sides' view of the channel: a control page (the head)
and, after it, the data area where a message's payload lives (wire.py).
Messages strictly alternate: a side writes its payload, fills the head,
moves its direction's sequence word and wakes the other side (channel.py);
the other side reads the payload before posting its answer.

    host -> child: LOAD (path, config), CALL (function index; arguments),
                   INVOKE_RESULT / INVOKE_ERROR (a host function's outcome),
                   ACK (a log line was handled, a RELEASE done), CLOSE,
                   CREATE (an instance of offer N: its methods' call-layer
                   signatures; RESULT with the function index of its first
                   method, or ERROR), DESTROY (the instance whose first
                   method is N; RESULT), QUERY_RESULT (a token and its
                   methods' signatures, or token 0), SCALL_RESULT (a status;
                   the result, or the failure message)
    child -> host: ACK (started), READY (the plugin spec) or FAILED (an error),
                   RESULT or ERROR (of a CALL or CREATE), INVOKE (call host
                   function N), LOG, CLOSED, and the plugin's host->query,
                   host->call and host->release of the host's services:
                   QUERY (id, revision, fingerprint), SCALL (token; method
                   index, arguments), RELEASE (token)
"""

from __future__ import annotations

import mmap
import struct

__all__ = ["CONTROL_SIZE", "HEAD", "HEAD_FIELDS", "TO_CHILD", "TO_HOST"]

LOAD, READY, FAILED, CALL, RESULT, ERROR, INVOKE, INVOKE_RESULT, INVOKE_ERROR, LOG, ACK, CLOSE, CLOSED = range(1, 14)
CREATE, DESTROY, QUERY, QUERY_RESULT, SCALL, SCALL_RESULT, RELEASE = range(14, 21)

TO_CHILD, TO_HOST = 0, 1

# The head at the start of the control page (the C channel's ChannelHead):
# a sequence word and a sleeping flag per direction, the last message's kind,
# arg, payload offset and length and the data area's size, then each
# receiver's spin budget in ns.
HEAD = struct.Struct("=2I2I2I3Q2I")
HEAD_FIELDS = {"seq": 0, "sleeping": 8, "kind": 16, "arg": 20, "base": 24, "length": 32, "size": 40, "budget": 48,
               "sizeof": HEAD.size}
CONTROL_SIZE = mmap.PAGESIZE  # the control page; data follows at this offset
