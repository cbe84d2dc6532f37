"""Documentation that must not drift from the code."""

from __future__ import annotations

import re

from facesearch.config import Settings
from tests.conftest import REPO_ROOT


def test_every_setting_is_documented() -> None:
    text = (REPO_ROOT / "docs" / "settings.md").read_text()
    documented = set(re.findall(r"^- `([a-z0-9_]+)`:", text, flags=re.M))
    missing = set(Settings.model_fields) - documented
    assert not missing, f"settings missing from docs/settings.md: {sorted(missing)}"
    stale = documented - set(Settings.model_fields)
    assert not stale, f"docs/settings.md documents settings that do not exist: {sorted(stale)}"


def test_readme_opens_with_the_two_setup_commands() -> None:
    readme = (REPO_ROOT / "README.md").read_text()
    head = readme[:1500]
    assert "bash scripts/run.sh" in head and "bash scripts/test.sh" in head
    ci = (REPO_ROOT / ".ci" / "run").read_text()
    assert "scripts/test.sh" in ci
