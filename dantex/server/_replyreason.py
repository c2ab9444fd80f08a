"""Refusal reasons for the metrics, from RFC 1928 §6 reply codes."""

from __future__ import annotations

from dantex.protocol.socks5 import Reply

__all__ = ["reply_reason"]


def reply_reason(code: int) -> str:
    """``host-unreachable`` for 0x04 and so on; unknown codes are general."""
    try:
        return Reply(code).name.lower().replace("_", "-")
    except ValueError:
        return "general-failure"
