"""Assemble the report from its sections; the hook for adding one.

A section is a title and a function `render(ctx) -> str` returning its Markdown body (headings
inside it start at `###`). Through the `Context` it reads the results (`ctx.results`) and the
derived numbers (`ctx.analysis`), draws figures (`ctx.figure`), adds headline numbers to
summary.json (`ctx.headline`) and conclusion sentences to the Summary (`ctx.conclude`). Sections
are numbered by their position in `deeppose.report.sections.SECTIONS`; sections marked `last`
(the Summary) render after all others, so they see every conclusion.

To add a section, write its function (in its own module if it is large) and insert one
`Section(...)` into `SECTIONS`. `show_figure` and `missing_note` below keep every section's
figures and "not run" notes alike.
"""

from __future__ import annotations

import os
import re
import sys
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from deeppose.grid import Job
from deeppose.report.analysis import Analysis
from deeppose.report.figures import draw_placeholder, png_bytes
from deeppose.report.load import Loaded, Results

SEE_SUMMARY = "see *Jobs without results* in the Summary"


@dataclass
class Context:
    results: Results
    markdown_path: Path  # where report.md goes: figure links are relative to its folder
    figures_dir: Path
    draw: bool = True  # False: only record which figures would be written
    figures: list[Path] = field(default_factory=list)
    pngs: dict[Path, bytes] = field(default_factory=dict)  # drawn figures, written with the report
    summary: dict[str, Any] = field(default_factory=dict)
    conclusions: list[tuple[str, str]] = field(default_factory=list)  # (scope, sentence)

    @cached_property
    def analysis(self) -> Analysis:
        return Analysis(self.results)

    def figure(self, name: str, draw: Callable[[], Figure]) -> str:
        """Draw figure `name` (a .png file name) from `draw()`; return its link for the Markdown."""
        path = self.figures_dir / name
        if path in self.figures:
            raise ValueError(f"figure {name} written twice")
        self.figures.append(path)
        if self.draw:
            self.pngs[path] = png_bytes(draw)
        return Path(os.path.relpath(path, self.markdown_path.parent)).as_posix()

    def headline(self, *keys: str, value: Any) -> None:
        """Set summary[keys[0]][keys[1]]... = value (floats to 6 significant figures); None
        values are left out (dvc metrics reads numbers; the report says why one is missing)."""
        if value is None:
            return
        if isinstance(value, float):
            value = float(f"{value:.6g}")
        node = self.summary
        for key in keys[:-1]:
            node = node.setdefault(key, {})
        node[keys[-1]] = value

    def conclude(self, scope: str, sentence: str) -> None:
        """A conclusion for the Summary; `scope` is a device name or "general"."""
        self.conclusions.append((scope, sentence))


@dataclass(frozen=True)
class Section:
    title: str
    render: Callable[[Context], str]
    last: bool = False


def show_figure(ctx: Context, name: str, alt: str, draw: Callable[[], Figure] | None, why_not: str = "") -> str:
    """Write figure `name` and return the Markdown that shows it. With `draw` None a placeholder
    saying `why_not` is written instead and not shown: the set of files a report writes depends on
    the grid only, so a workflow can declare them whatever the results."""
    if draw is not None:
        return f"![{alt}]({ctx.figure(name, draw)})"
    ctx.figure(name, lambda: draw_placeholder(alt, why_not))
    return ""


def jobs_on(results: dict[Job, Loaded], device: str) -> list[Job]:
    return [job for job in results if job.device == device]


def missing_note(results: dict[Job, Loaded], device: str, what: str) -> str:
    """'' when every `what` job on `device` has a result, else how many lack one; the reasons are
    in the Summary's table, once for the whole report."""
    jobs = jobs_on(results, device)
    missing = [job for job in jobs if not results[job].ok]
    if not missing:
        return ""
    if len(missing) == len(jobs):
        return f"No {what} result on {device} ({len(jobs)} jobs): {SEE_SUMMARY}."
    return f"{len(missing)} of {len(jobs)} {what} jobs on {device} have no usable result: {SEE_SUMMARY}."


def anchor(heading: str) -> str:
    """GitHub's anchor for a heading."""
    slug = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return slug.replace(" ", "-")


def render_document(ctx: Context, title: str, intro: str, sections: Sequence[Section]) -> str:
    headings = [f"{i}. {section.title}" for i, section in enumerate(sections, 1)]
    bodies: dict[int, str] = {}
    for index in sorted(range(len(sections)), key=lambda i: sections[i].last):
        bodies[index] = _render_safely(sections[index], ctx)
    parts = [f"# {title}", intro.strip()]
    parts.append("\n".join(f"{i}. [{s.title}](#{anchor(h)})" for i, (s, h) in enumerate(zip(sections, headings), 1)))
    for index, heading in enumerate(headings):
        parts += [f"## {heading}", bodies[index].strip()]
    return "\n\n".join(parts) + "\n"


def _render_safely(section: Section, ctx: Context) -> str:
    """A section's body; a bug in one section costs that section, not the whole report."""
    try:
        return section.render(ctx)
    except Exception as error:  # noqa: BLE001 - the report must still build
        print(f"deeppose report: section {section.title!r} failed:", file=sys.stderr)
        traceback.print_exc(file=sys.stderr)
        return f"**This section could not be built** ({type(error).__name__}: {error}); see the report stage's log."
