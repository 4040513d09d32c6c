"""The glossary: one definition per word, quoted by the README and by the templates."""

from __future__ import annotations

import re
from pathlib import Path

from django.conf import settings

from dashboard.glossary import TERMS, readme_lines

ROOT = Path(settings.BASE_DIR)


def test_the_readme_quotes_every_definition_verbatim() -> None:
    section = (ROOT / "README.md").read_text().split("### Definitions")[1].split("\n## ")[0]
    listed = [line for line in section.splitlines() if line.startswith("- **")]
    assert listed == readme_lines()


def test_every_word_a_template_defines_is_in_the_glossary() -> None:
    used = {
        key
        for path in (ROOT / "templates").rglob("*.html")
        for key in re.findall(r'{% define "([a-z_]+)" %}', path.read_text())
    }
    assert used <= set(TERMS)
    # each of these words is defined on a page or in a report, not only in the README
    assert {"idle_gpu_hours", "burstiness", "load_capacity", "measured_today"} <= used
