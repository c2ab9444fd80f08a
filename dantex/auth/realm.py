"""The realm: turns an authenticated name into a :class:`SocksUser` with groups.

Each backend knows where groups come from: the password file's third field,
the LDAP directory, or the system group database (``/etc/group`` and the
primary group, as Dante's ``group:`` uses).  A :class:`SocksRealm` asks its
:data:`GroupSource`; :class:`SystemGroups` is the system one, its NSS calls
run through the blocking runner and answers cached for a while.
"""

from __future__ import annotations

import grp
import os
import pwd
from collections.abc import Callable
from typing import Any

from twisted.cred.portal import IRealm
from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IReactorTime
from zope.interface import implementer

from dantex.auth._base import Blocking, ISocksUser, SocksUser

__all__ = ["GroupSource", "SocksRealm", "SystemGroups", "no_groups", "system_groups_of"]

#: ``groups(name) -> Deferred[frozenset[str]]``
GroupSource = Callable[[str], "Deferred[frozenset[str]]"]


def no_groups(name: str) -> Deferred[frozenset[str]]:
    """A group source for backends without groups."""
    return succeed(frozenset())


def system_groups_of(name: str) -> frozenset[str]:
    """``name``'s system groups: supplementary ones and the primary group.

    Blocking (NSS may ask the network).  Unknown users have no groups.
    """
    try:
        entry = pwd.getpwnam(name)
    except (KeyError, UnicodeEncodeError):
        return frozenset()
    names = set()
    try:
        gids = os.getgrouplist(name, entry.pw_gid)
    except OSError:
        gids = [entry.pw_gid]
    for gid in gids:
        try:
            names.add(grp.getgrgid(gid).gr_name)
        except KeyError:
            continue
    return frozenset(names)


class SystemGroups:
    """The system group database, queried off the reactor and cached.

    :param ttl: seconds an answer is reused.
    """

    def __init__(self, run: Blocking, clock: IReactorTime, ttl: float = 60.0) -> None:
        self._run = run
        self._clock = clock
        self._ttl = ttl
        self._cache: dict[str, tuple[float, frozenset[str]]] = {}

    def __call__(self, name: str) -> Deferred[frozenset[str]]:
        now = self._clock.seconds()
        hit = self._cache.get(name)
        if hit is not None and hit[0] > now:
            return succeed(hit[1])

        def keep(groups: frozenset[str]) -> frozenset[str]:
            if len(self._cache) > 10_000:
                self._cache.clear()
            self._cache[name] = (self._clock.seconds() + self._ttl, groups)
            return groups

        return self._run(system_groups_of, name).addCallback(keep)


@implementer(IRealm)
class SocksRealm:
    """Avatars are :class:`SocksUser` values with the groups from ``groups``."""

    def __init__(self, groups: GroupSource = no_groups) -> None:
        self._groups = groups

    def requestAvatar(
        self,
        avatarId: Any,  # noqa: N803 (IRealm spells it so)
        mind: object,
        *interfaces: Any,
    ) -> Deferred[tuple[Any, object, Callable[[], None]]]:
        if ISocksUser not in interfaces:
            raise NotImplementedError("SocksRealm only provides ISocksUser")
        name = avatarId.decode("utf-8") if isinstance(avatarId, bytes) else avatarId

        def made(groups: frozenset[str]) -> tuple[Any, object, Callable[[], None]]:
            return ISocksUser, SocksUser(name, groups), _logout

        return self._groups(name).addCallback(made)


def _logout() -> None:
    return None
