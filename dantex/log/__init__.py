"""Dante-format logging: the line layout (:mod:`.format`) and its destinations."""

from dantex.log.format import dante_addr, session_line
from dantex.log.output import DanteLog

__all__ = ["DanteLog", "dante_addr", "session_line"]
