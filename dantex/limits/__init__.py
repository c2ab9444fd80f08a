"""Resource control: Dante's bandwidth, session, redirect and monitor modules.

* :mod:`.bucket` -- token-bucket arithmetic on an injected clock.
* :mod:`.shaper` -- pauses a relay's producers while its bucket is in debt.
* :mod:`.sessions` -- which limits a session counts against, and its slots.
* :mod:`._table` -- the counters, in memory or shared by ``--workers N``.
* :mod:`.redirect` -- ``redirect to:`` / ``redirect from:`` for CONNECT.
* :mod:`.monitors` -- ``monitor { }`` data and disconnect alarms.
* :mod:`.timeouts` -- per-rule and global timeouts, ``timeout.tcp_fin_wait``.

Not implemented: ``session.state.key: hostid`` and
``session.state.key.hostindex`` (no host ids on Linux); shaping of UDP
datagrams (``bandwidth:`` applies to TCP relays); redirect and monitors for
BIND and UDP ASSOCIATE.
"""
