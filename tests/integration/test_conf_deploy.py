"""The deployment samples in conf/: the systemd unit, haproxy.cfg, dantex-check.

(conf/relayd.conf is OpenBSD-only and not tested; conf/sockd*.conf are parsed
by tests/config/test_parser.py; conf/haproxy.cfg also runs for real in
test_haproxy.py.)
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.conftest import under_policy
from tests.integration.dantex_server import REPO
from tests.integration.peers import require_binary

pytestmark = pytest.mark.integration
CONF = REPO / "conf"


def test_systemd_unit_verifies(tmp_path: Path) -> None:
    """systemd-analyze verify accepts conf/dantex.service (twistd's path swapped
    for this machine's)."""
    analyze = under_policy(lambda: require_binary("systemd-analyze", "systemd"))
    twistd = shutil.which(
        "twistd", path=os.path.dirname(sys.executable)
    ) or shutil.which("twistd")
    assert twistd is not None
    unit = tmp_path / "dantex.service"
    unit.write_text(
        (CONF / "dantex.service").read_text().replace("/usr/local/bin/twistd", twistd)
    )
    r = subprocess.run(
        [analyze, "verify", str(unit)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert r.returncode == 0, r.stdout + r.stderr


def test_haproxy_cfg_is_valid() -> None:
    """haproxy -c accepts conf/haproxy.cfg as shipped."""
    haproxy = under_policy(lambda: require_binary("haproxy", "haproxy"))
    r = subprocess.run(
        [haproxy, "-c", "-f", str(CONF / "haproxy.cfg")],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert r.returncode == 0, r.stdout + r.stderr


def test_check_script_is_executable_sh() -> None:
    """conf/dantex-check is an executable POSIX sh script that sh -n accepts."""
    path = CONF / "dantex-check"
    assert os.access(path, os.X_OK)
    r = subprocess.run(["sh", "-n", str(path)], capture_output=True, timeout=10)
    assert r.returncode == 0, r.stderr
