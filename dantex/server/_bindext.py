"""Dante's BIND extension (``extension: bind``): a BIND for 255.255.255.255.

Refused with 0x02 unless ``extension: bind`` is set, as danted does.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from dantex.log.format import client_text, dante_addr, session_line
from dantex.protocol.socks5 import Reply

if TYPE_CHECKING:
    from dantex.server.session import SocksSession

__all__ = ["start_extension"]


def start_extension(session: SocksSession) -> None:
    """A BIND request for 255.255.255.255."""
    if not session.policy.config.extension_bind:
        _refuse_disabled(session)
        return
    session.refuse(
        Reply.COMMAND_NOT_SUPPORTED, "the BIND extension is not supported yet"
    )


def _refuse_disabled(session: SocksSession) -> None:
    """danted's answer: 0x02 echoing the request, one ``tcp/accept ]`` line."""
    cm = session.client_match
    if cm is not None and session._logs(cm, "disconnect", "error"):
        client = client_text(session.client, session.method, session.user)
        session.policy.log.info(
            session_line(
                "block",
                cm.number,
                "tcp",
                "accept",
                "]",
                f"{client} {dante_addr(session.server)}: blocked by higher-level "
                "socks-rule #0: client requested disabled Dante extension: bind",
            )
        )
    session._write(session.reply(Reply.NOT_ALLOWED, session.target))
    session._close_now(logged=True)
