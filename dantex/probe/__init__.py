"""``dantex probe``: a health check for SOCKS servers (dantex, danted, others).

It connects to a SOCKS server, negotiates (optionally with a user name and
password), asks for a CONNECT or BIND and can exchange a payload, then exits
0 (healthy) or 1 (not), or 2 on a usage error -- the convention of OpenBSD
relayd's ``check script`` and HAProxy's ``external-check``.  ``--sessions N``
holds N sessions open at once and counts how many were served.

Plain blocking sockets driven by the sans-IO handshakes of
:mod:`dantex.client._handshake`; no reactor.  Not implemented: UDP ASSOCIATE,
HTTP CONNECT proxies, TLS to the proxy.
"""

from dantex.probe._check import ProbeFailed, ProbeSpec, Session, open_session, run_check

__all__ = ["ProbeFailed", "ProbeSpec", "Session", "open_session", "run_check"]
