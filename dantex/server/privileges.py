"""Running without root: ``user.unprivileged`` (Dante §1.2) and twistd ``--uid``.

Listening sockets are always bound first (``privilegedStartService``), so a
port below 1024 works either way.  Two ways to give root up afterwards:

* twistd ``--uid USER --gid GROUP``: twistd itself switches the real,
  effective and saved ids; nothing can be regained.  With ``--workers N``
  the workers are started after the switch, so that user must be able to
  run the Python interpreter and read the configuration.
* ``user.unprivileged: USER`` (as danted): when started as root, the
  effective user and group become USER's and the supplementary groups
  USER's groups; the saved user id stays root, as Dante keeps it to regain
  privileges.  Each worker does the same after adopting its sockets.

``user.privileged`` is checked (the user must exist) and otherwise unused:
dantex needs no privileged operation after binding.
"""

from __future__ import annotations

import os
import pwd

__all__ = ["drop_effective"]


def drop_effective(user: str | None) -> bool:
    """Switch the effective ids to ``user`` (``user.unprivileged``).

    :returns: whether anything changed (not root, or no user: nothing).
    :raises KeyError: ``user`` does not exist (any more).
    """
    if user is None or os.geteuid() != 0:
        return False
    entry = pwd.getpwnam(user)
    os.initgroups(entry.pw_name, entry.pw_gid)
    os.setegid(entry.pw_gid)
    os.seteuid(entry.pw_uid)
    return True
