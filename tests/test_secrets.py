"""No credential is committed: a scan of every file git tracks for credentials in URIs, known token and
key shapes, and high-entropy values assigned to secret-sounding names. Placeholders (CHANGE_ME, ``${VAR}``,
the local test API's demo token, ``user:pw`` in docs) are allowed, and nothing else.

The scanner's own cases are built at run time, so this file holds no secret-shaped literal itself.
"""

from __future__ import annotations

import math
import re
import subprocess
from collections import Counter
from pathlib import Path

import pytest

from salespulse.config import REPO_ROOT

PLACEHOLDERS = {"CHANGE_ME", "pw", "password", "secret", "demo-token", "TOKEN"}
URI_CREDENTIAL = re.compile(r"[a-z][a-z0-9+.-]*://(?P<user>[^\s:/@'\"]*):(?P<password>[^\s@/'\"]+)@")
KNOWN_SHAPES = {
    "private key": re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----"),
    "AWS access key": re.compile(r"\bAKIA[0-9A-Z]{16}\b"),
    "GitHub token": re.compile(r"\bgh[pousr]_[A-Za-z0-9]{36,}\b"),
    "Slack token": re.compile(r"\bxox[abprs]-[A-Za-z0-9-]{10,}"),
    "Slack webhook": re.compile(r"hooks\.slack\.com/services/T[A-Z0-9]{6,}/B[A-Z0-9]{6,}/[A-Za-z0-9]{20,}"),
    "Fernet key": re.compile(r"(?<![A-Za-z0-9_-])[A-Za-z0-9_-]{43}=(?![A-Za-z0-9_=-])"),
}
ASSIGNED = re.compile(
    r"(?i)(?P<name>[a-z0-9_]*(?:secret|token|password|passwd|api_key|apikey|fernet_key|private_key)[a-z0-9_]*)"
    r"\s*[:=]\s*['\"]?(?P<value>[A-Za-z0-9+/=_.-]{16,})"
)


def entropy(value: str) -> float:
    """Shannon entropy in bits per character."""
    counts = Counter(value)
    return -sum(n / len(value) * math.log2(n / len(value)) for n in counts.values())


# On a line whose credential is a test's fake, or on the line before it (detect-secrets' pragmas).
ALLOW, ALLOW_NEXT = "pragma: allowlist secret", "pragma: allowlist nextline secret"


def scan(text: str) -> list[str]:
    """What in ``text`` looks like a committed credential (lines marked with an allowlist pragma aside)."""
    lines = text.splitlines()
    kept = [
        line for i, line in enumerate(lines) if ALLOW not in line and not (i and ALLOW_NEXT in lines[i - 1])
    ]
    text = "\n".join(kept)
    found = []
    for match in URI_CREDENTIAL.finditer(text):
        password = match["password"]
        if password not in PLACEHOLDERS and not password.startswith("$"):
            found.append(f"credential in a URI: {match.group(0)}")
    for kind, pattern in KNOWN_SHAPES.items():
        found += [f"{kind}: {m.group(0)[:12]}..." for m in pattern.finditer(text)]
    for match in ASSIGNED.finditer(text):
        value = match["value"]
        if value not in PLACEHOLDERS and not value.startswith("$") and entropy(value) > 3.5:
            found.append(f"high-entropy value for {match['name']}: {value[:8]}...")
    return found


def tracked_files() -> list[Path]:
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO_ROOT,
        capture_output=True,
        check=True,
    ).stdout.decode()
    return [REPO_ROOT / name for name in listed.split("\0") if name]


def test_no_file_of_the_repository_holds_a_credential() -> None:
    files = tracked_files()
    assert len(files) > 50
    findings = {}
    for path in files:
        if path.suffix in {".png", ".parquet", ".gz"} or not path.is_file():
            continue
        hits = scan(path.read_text(encoding="utf-8", errors="replace"))
        if hits:
            findings[str(path.relative_to(REPO_ROOT))] = hits
    assert findings == {}


def test_the_env_example_holds_placeholders_and_env_is_ignored() -> None:
    example = (REPO_ROOT / ".env.example").read_text()
    assert scan(example) == []
    values = dict(line.split("=", 1) for line in example.splitlines() if "=" in line and line[:1].isupper())
    for name in ("POSTGRES_PASSWORD", "WAREHOUSE_PASSWORD", "AIRFLOW__CORE__FERNET_KEY"):
        assert values[name] == "CHANGE_ME", name
    assert ".env" in (REPO_ROOT / ".gitignore").read_text().splitlines()


def _fake(*parts: str) -> str:
    return "".join(parts)


@pytest.mark.parametrize(
    "text",
    [
        _fake("postgres://salespulse:", "hunter2", "@warehouse-db:5432/warehouse"),
        _fake("AIRFLOW__API_AUTH__JWT_SECRET=", "Zx9kQ2mV7rT4bN8wL1cJ6hP3sF5dG0yA"),
        _fake("AIRFLOW__CORE__FERNET_KEY: ", "q3Jc9xZk2LmN8vB4tR7wY1pD6sF0hG5jK2aE9uI3oQ", "="),
        _fake("-----BEGIN RSA ", "PRIVATE KEY-----"),
        _fake("AKIA", "IOSFODNN7EXAMPLE"),
        _fake("token = '", "ghp_", "a" * 18, "B1c2D3e4F5g6H7i8J9k0"),
        _fake("https://hooks.slack.com/services/", "T0AAAAAAA/B0BBBBBBB/", "x7Yz9Qw2Er4Ty6Ui8Op0As1D"),
    ],
)
def test_the_scan_catches_each_shape_of_credential(text: str) -> None:
    assert scan(text), text


@pytest.mark.parametrize(
    "text",
    [
        "AIRFLOW_CONN_SALESPULSE_WAREHOUSE=postgres://salespulse:CHANGE_ME@warehouse-db:5432/warehouse",
        "postgres://salespulse:${WAREHOUSE_PASSWORD:?set it}@warehouse-db:5432/warehouse",
        "WAREHOUSE_URL=postgresql+psycopg://user:pw@host:5432/warehouse",
        "AIRFLOW_CONN_SALESPULSE_CRM_API='http://:demo-token@127.0.0.1:8765/'",
        "postgresql+psycopg://postgres@127.0.0.1:5432/postgres",
    ],
)
def test_placeholders_are_not_findings(text: str) -> None:
    assert scan(text) == []


def test_a_line_marked_as_a_tests_fake_is_skipped_and_only_that_line() -> None:
    fake = _fake("postgres://bi:", "s3cret", "@db/x")
    assert scan(f"{fake}  # {ALLOW}") == []
    assert scan(f"{fake}  # {ALLOW}\n{fake}") != []
    assert scan(f"# {ALLOW_NEXT}\n{fake}") == [] and scan(f"# {ALLOW_NEXT}\nx\n{fake}") != []
