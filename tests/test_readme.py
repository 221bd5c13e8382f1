"""The README's findings are the committed report's: a rerun rewrites the report, and a README left
quoting the run before it would state figures no kept measurement supports."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# An estimate with its interval, "1.83 [1.64, 2.04]", and a count, "0 of 12".
FIGURE = re.compile(r"-?\d[\d,.]* \[-?\d[\d,.]*, -?\d[\d,.]*\]|\b\d+ of \d+\b")


def figures(text: str) -> list[str]:
    return FIGURE.findall(text.replace("\u2212", "-"))


def findings_section(readme: str) -> str:
    start = readme.index("## What it found")
    return readme[start : readme.index("\n## ", start + 1)]


def test_every_figure_in_the_readmes_findings_is_the_reports():
    report = (ROOT / "reports" / "report.md").read_text().replace("\u2212", "-")
    quoted = figures(findings_section((ROOT / "README.md").read_text()))
    assert len(quoted) >= 10, quoted  # the section still quotes the report's answers
    assert [f for f in quoted if f not in report] == []


def test_a_figure_the_report_lacks_is_caught():
    report = "slower, 1.83 [1.64, 2.04]; found in 0 of 6 groups"
    assert figures("1.83 [1.64, 2.04]x, in 0 of 6 groups") == ["1.83 [1.64, 2.04]", "0 of 6"]
    assert [f for f in figures("1.78 [1.67, 1.90]x, 5 of 6") if f not in report] == [
        "1.78 [1.67, 1.90]",
        "5 of 6",
    ]
    assert figures("\u22120.050 [\u22120.061, \u22120.040] %") == ["-0.050 [-0.061, -0.040]"]
