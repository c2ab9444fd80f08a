"""``dantex`` / ``python -m dantex``: the command-line tools.

``dantex probe ...``: check a SOCKS server (:mod:`dantex.probe`).  The server
itself runs under twistd: ``twistd -n dante -c sockd.conf``.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

__all__ = ["main"]

_USAGE = "usage: dantex probe [options] ...  (dantex probe --help)"


def main(argv: Sequence[str] | None = None) -> int:
    """Dispatch a sub-command; exit status 2 for an unknown one."""
    args = sys.argv[1:] if argv is None else list(argv)
    if not args or args[0] in ("-h", "--help"):
        print(_USAGE, file=sys.stderr if not args else sys.stdout)
        return 2 if not args else 0
    if args[0] == "probe":
        from dantex.probe.cli import main as probe

        return probe(args[1:])
    print(f"dantex: unknown command {args[0]!r}\n{_USAGE}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
