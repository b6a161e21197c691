"""Helpers of the multi-process (gloo DDP) tests."""

from __future__ import annotations

import socket


def free_port() -> int:
    """A free TCP port on the loopback interface for ``init_process_group``."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
