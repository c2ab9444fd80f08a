"""Resource control: ``bandwidth:`` and ``session.*`` limits (Dante §1.6, §1.9).

* :mod:`.bucket` -- token-bucket arithmetic on an injected clock.
* :mod:`.shaper` -- pauses a relay's producers while its bucket is in debt.
* :mod:`.sessions` -- which limits a session counts against, and its slots.
* :mod:`._table` -- the counters, in memory or shared by ``--workers N``.

Not implemented: ``session.state.key: hostid`` and
``session.state.key.hostindex`` (no host ids on Linux); shaping of UDP
datagrams (``bandwidth:`` applies to TCP relays).
"""
