"""Render second: report.md is the template applied to `Findings`. The template holds the prose and
places what the functions registered here build, in Python, where a test can check it."""

from __future__ import annotations

import re
from functools import partial

import jinja2

from deeppose import fmt
from deeppose.report import accuracy, appendix, lines, tables
from deeppose.report.analysis import Findings
from deeppose.report.figures import link as figure_link
from deeppose.report.study import AGREE_TEXT
from deeppose.stats import LEVEL

HEADINGS = {  # the template's key -> the section's title, in the report's order
    "findings": "Findings",
    "changes": "Changes since {baseline}",  # only with --baseline
    "autodiff": "Effect of automatic differentiation",
    "network": "Impact of the network implementation",
    "breakdown": "Per-layer breakdown of the core process",
    "accuracy": "Accuracy",
    "study": "Against the original study",
    "appendix": "Appendix: set-up, environment, fairness and cost",
}
PLACED = {  # module -> the names the template calls
    tables: "missing training cells compiled ratios throughput breakdown_jobs comparison_table "
    "agreement_table loss_modes_sentence comparison_sentence layer_rates roofline_sentence records costs",
    accuracy: "scoring_note accuracy accuracy_lines",
    appendix: "parameters details data environment ceilings fairness jobs_without_results",
    lines: "answer_groups checks_line control_lines margins loss_effect_line network_lines noise_table "
    "aa_table planted_table",
}


def link(heading: str) -> str:
    """A Markdown link to a heading ("2. Accuracy"), by GitHub's anchor for it."""
    anchor = "".join(c for c in heading.lower() if c.isalnum() or c in "- ").replace(" ", "-")
    return f"[{heading}](#{anchor})"


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("deeppose.report", "."),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        autoescape=False,
    )
    env.filters.update(
        name=fmt.framework_name, percent=fmt.percent, flops=fmt.flops, words=fmt.join_words, link=link
    )
    env.globals.update(
        {name: getattr(module, name) for module, names in PLACED.items() for name in names.split()},
        CI=f"{round(LEVEL * 100)} % CI",
        AGREE_TEXT=AGREE_TEXT,
    )
    return env


def document(f: Findings, figures: set[str], title: str, changes: str | None = None) -> str:
    """The whole report.md; `changes` (compare's markdown, its first line the baseline) opens it."""
    baseline, _, markdown = (changes or "").partition("\n")
    shown = [(k, t.format(baseline=baseline)) for k, t in HEADINGS.items() if changes or k != "changes"]
    headings = {k: f"{i}. {t}" for i, (k, t) in enumerate(shown, 1)}
    text = (
        _environment()
        .get_template("report.md.j2")
        .render(
            f=f,
            figure=partial(figure_link, figures),
            title=title,
            headings=headings,
            changes={"baseline": baseline, "markdown": markdown.strip()} if changes else None,
        )
    )
    text = re.sub(r"[ \t]+\n", "\n", text)
    return re.sub(r"\n{3,}", "\n\n", text).strip() + "\n"


def section(heading: str, f: Findings, figures: set[str]) -> str:
    """One section's body (e.g. "Per-layer breakdown of the core process"), as the whole report has it."""
    text = document(f, figures, "")
    start = re.search(rf"^## \d+\. {re.escape(heading)}\n", text, flags=re.M)
    stop = re.search(r"^## ", text[start.end() :], flags=re.M)
    return text[start.end() : start.end() + stop.start() if stop else None].strip() + "\n"
