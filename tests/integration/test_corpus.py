"""Corpus: Debian's example configurations and the reference's snippets, read
by danted (``danted -V``) and by dantex's parser, must get the same verdict.

The examples are read from the installed dante-server package (its BSD-style
files are not copied here).  Each example is checked whole, as shipped, and
statement by statement with its commented-out settings and rules switched on,
each statement on a fixed base that both servers accept.  Where danted
accepts and dantex refuses, every refusal must be a documented one: a feature
not supported yet (or out of scope); dantex must never accept what danted
refuses.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from dantex.config import ConfigErrors, keywords, parse
from tests.integration.dantex_server import REPO

pytestmark = pytest.mark.integration

EXAMPLES = Path("/usr/share/doc/dante-server/examples")
REFERENCE = REPO.parent / "shared" / "dante-reference.md"
BASE = (
    "logoutput: stderr\n"
    "internal: 127.0.0.1 port = 1080\n"
    "external: 127.0.0.1\n"
    "socksmethod: none\n"
    "user.privileged: root\n"
    "user.unprivileged: nobody\n"
)
#: Refusals dantex documents (README, dantex/config/support.py).
DOCUMENTED = re.compile(
    r"is not supported yet|is not supported on this system|not supported by dantex"
)


def uncommented(text: str) -> list[str]:
    """The file's lines with commented-out configuration switched on and
    prose blanked (a comment is configuration if it starts a block, is inside
    one, or starts with a Dante keyword and a colon)."""
    out: list[str] = []
    in_block = False
    for line in text.splitlines():
        m = re.match(r"^#+\s?(.*)$", line)
        if m is None:
            out.append(line)
            continue
        body = m.group(1)
        head = re.match(
            r"\s*(client|socks|route|hostid|monitor|pass|block)\b[^{]*\{", body
        )
        kw = re.match(r"\s*([A-Za-z_.]+):", body)
        if in_block or head or (kw and keywords.is_known(kw.group(1))):
            out.append(body)
            if head and "}" not in body:
                in_block = True
            elif in_block and "}" in body:
                in_block = False
        else:
            out.append("")
    return out


def statements(lines: list[str]) -> Iterator[str]:
    """Top-level statements: one setting line, or a whole block."""
    current: list[str] = []
    depth = 0
    for line in lines:
        code = line.split("#", 1)[0].rstrip()
        if not code.strip() and depth == 0:
            continue
        current.append(code)
        depth += code.count("{") - code.count("}")
        if depth <= 0:
            yield "\n".join(current)
            current, depth = [], 0


def on_base(statement: str) -> str:
    """A whole config around one statement (settings before rules)."""
    if re.match(r"(internal|external|logoutput|user\.)\S*:", statement):
        base = BASE
        if statement.startswith("internal:"):
            base = base.replace("internal: 127.0.0.1 port = 1080\n", "")
        return statement + "\n" + base
    return BASE + statement + "\n"


def reference_snippets() -> list[str]:
    """The ``route {}`` and ``monitor {}`` examples of the reference text."""
    if not REFERENCE.exists():
        return []
    blocks = re.findall(r"```\n(.*?)```", REFERENCE.read_text(), re.S)
    return [b for b in blocks if re.match(r"(route|monitor) \{", b)]


def cases() -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    for path in sorted(EXAMPLES.glob("*.conf")):
        text = path.read_text()
        out.append((f"{path.name} as shipped", text))
        for n, statement in enumerate(statements(uncommented(text)), 1):
            out.append((f"{path.name} #{n}", on_base(statement)))
    for n, snippet in enumerate(reference_snippets(), 1):
        out.append((f"reference snippet #{n}", on_base(snippet)))
    return out


CASES = cases()


@pytest.fixture(scope="module")
def danted_check(
    program: Callable[[str, str], str], tmp_path_factory: pytest.TempPathFactory
) -> Callable[[str], tuple[bool, str]]:
    """``danted -V`` on a config text: (accepted, its error lines)."""
    danted = program("danted", "dante-server")
    work = tmp_path_factory.mktemp("corpus")

    def check(text: str) -> tuple[bool, str]:
        conf = work / "danted.conf"
        conf.write_text(text)
        out = subprocess.run(
            [danted, "-V", "-f", str(conf)],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        errors = "\n".join(
            line for line in out.stderr.splitlines() if ": error: " in line
        )
        return out.returncode == 0 and not errors, errors

    return check


def test_corpus_is_not_empty() -> None:
    """The examples are installed and hold statements to check."""
    assert EXAMPLES.is_dir(), "dante-server's examples are missing"
    assert len(CASES) >= 30


@pytest.mark.parametrize(("name", "text"), CASES, ids=[c[0] for c in CASES])
def test_same_verdict_as_danted(
    danted_check: Callable[[str], tuple[bool, str]], name: str, text: str
) -> None:
    """danted -V and dantex agree; dantex's only extra refusals are documented."""
    danted_ok, danted_errors = danted_check(text)
    try:
        parse(text, name)
        ours: list[str] = []
    except ConfigErrors as e:
        ours = [err.headline() for err in e.errors]
    if danted_ok and ours:
        undocumented = [e for e in ours if not DOCUMENTED.search(e)]
        assert not undocumented, f"danted accepts, dantex refuses:\n{text}\n{ours}"
    if not danted_ok:
        assert ours, f"dantex accepts what danted refuses:\n{text}\n{danted_errors}"
