"""The open-files limit: raised to the hard limit at start, as danted does.

Every relayed session holds two descriptors (client and target), plus a
pipe pair per direction while bytes are in flight.  The usual soft limit
(1024, systemd's default for services) would cap a process at a few hundred
sessions although the hard limit allows far more; raising the soft limit
needs no privilege.  With ``--workers N`` the supervisor raises it before
starting the workers, which inherit it.
"""

from __future__ import annotations

import resource

__all__ = ["raise_open_files"]

#: what "no hard limit" means for descriptors: Linux's default fs.nr_open
_NR_OPEN = 1 << 20


def raise_open_files() -> tuple[int, int] | None:
    """Raise the soft ``RLIMIT_NOFILE`` to the hard limit.

    :returns: (old, new) soft limits when it changed, else None (already at
        the hard limit, or the kernel refused).
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = _NR_OPEN if hard == resource.RLIM_INFINITY else hard
    if soft != resource.RLIM_INFINITY and soft >= target:
        return None
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    except (ValueError, OSError):
        return None
    return soft, target
