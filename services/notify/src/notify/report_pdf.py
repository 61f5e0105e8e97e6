"""The monitoring report as a PDF to print or file: A4 landscape pages drawn by matplotlib on the server — the chart
per agency on the first, then each table (split over pages when long), in Korean or English, fonts embedded.

matplotlib is imported on the first PDF asked for, not at start; its settings are global, so pages are drawn one
report at a time (a lock), in a worker thread (the caller's `asyncio.to_thread`).
"""

import io
import logging
import textwrap
import threading
from collections.abc import Iterator
from functools import cache
from typing import TYPE_CHECKING, Any

from .report_layout import CHART_COLOURS, Lang, Section, chart_rows, label, period_shown, sections

if TYPE_CHECKING:
    from matplotlib.figure import Figure

log = logging.getLogger(__name__)

PAGE = (11.69, 8.27)  # A4 landscape, in inches
ROWS_PER_PAGE = 28
LINE = 0.027  # a table row, as a share of the page's height
_drawing = threading.Lock()


@cache
def font_families() -> tuple[str, ...]:
    """A font with Hangul first (Debian's fonts-noto-cjk: every Noto Sans CJK face has it), then matplotlib's own."""
    from matplotlib import font_manager

    names = {font.name for font in font_manager.fontManager.ttflist}
    cjk = sorted(name for name in names if name.startswith("Noto Sans CJK"))
    korean = [name for name in cjk if name.endswith("KR")] or cjk[:1]
    if not korean:
        log.warning("no Noto Sans CJK font installed (Debian: fonts-noto-cjk): Korean reports print without Hangul")
    return (*korean, "DejaVu Sans")


def as_pdf(report: dict[str, Any], lang: Lang) -> bytes:
    import matplotlib
    from matplotlib.backends.backend_pdf import PdfPages

    t = label(lang)
    out = io.BytesIO()
    with _drawing, matplotlib.rc_context({"font.family": list(font_families()), "pdf.compression": 9}):
        metadata = {"Title": t("title"), "Creator": "onestop notify", "Subject": period_shown(report)}
        with PdfPages(out, metadata=metadata) as pdf:
            pdf.savefig(_first_page(report, lang))
            for page in _table_pages(sections(report, lang), t("none")):
                pdf.savefig(page)
    return out.getvalue()


def _page(heading: str, footer: str) -> "Figure":
    from matplotlib.figure import Figure

    figure = Figure(figsize=PAGE)
    if heading:
        figure.text(0.04, 0.94, heading, fontsize=15, weight="bold")
    if footer:
        figure.text(0.04, 0.025, footer, fontsize=7, color="#555555")
    return figure


def _first_page(report: dict[str, Any], lang: Lang) -> "Figure":
    from matplotlib.ticker import MaxNLocator

    t = label(lang)
    page = _page(t("title"), t("no_personal_data"))
    page.text(0.04, 0.9, f"{t('period')}: {period_shown(report)}", fontsize=10)
    rows, series = chart_rows(report, lang)
    # Bars of a useful thickness whatever the number of agencies: the chart is as tall as its groups need.
    tall = min(0.72, 0.07 + 0.045 * len(rows) * len(series))
    axes = page.add_axes((0.2, 0.82 - tall, 0.75, tall))
    axes.set_title(t("chart"), fontsize=11, loc="left")
    if not rows:
        axes.axis("off")
        axes.text(0, 0.5, t("none"), fontsize=11)
        return page
    height = 0.8 / len(series)
    for offset, (name, colour) in enumerate(zip(series, CHART_COLOURS, strict=True)):
        positions = [index + offset * height for index in range(len(rows))]
        bars = axes.barh(positions, [values[offset] for _, values in rows], height=height, color=colour, label=name)
        axes.bar_label(bars, fontsize=7, padding=2)
    axes.set_yticks([index + height * (len(series) - 1) / 2 for index in range(len(rows))], [n for n, _ in rows])
    axes.invert_yaxis()  # the first agency on top, as in the table
    axes.tick_params(labelsize=8)
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes.spines[["top", "right"]].set_visible(False)
    axes.legend(fontsize=8, loc="lower right")
    return page


def _table_pages(tables: list[Section], none: str) -> Iterator["Figure"]:
    """The tables one under the other, a new page when the next does not fit; a table longer than a page goes on in
    parts of ROWS_PER_PAGE rows (its heading numbered); a section without rows says none."""
    from matplotlib.transforms import Bbox

    parts = [
        (section, rows, number, -(-len(section.rows) // ROWS_PER_PAGE))
        for section in tables
        for number, rows in enumerate(
            [section.rows[i : i + ROWS_PER_PAGE] for i in range(0, len(section.rows), ROWS_PER_PAGE)] or [[]], start=1
        )
    ]
    page, top = None, 0.0
    for section, rows, number, of in parts:
        height = (len(rows) + 2.5) * LINE if rows else LINE  # the header row counts 2.5: wrapped labels
        if page is None or top - (height + 0.05) < 0.05:
            if page is not None:
                yield page
            page, top = _page("", ""), 0.95
        heading = section.heading if of <= 1 else f"{section.heading} ({number}/{of})"
        page.text(0.04, top - 0.02, heading, fontsize=13 if section.level == 2 else 11, weight="bold")
        top -= 0.045
        if not rows:
            page.text(0.04, top - LINE, none, fontsize=9)
            top -= LINE + 0.03
            continue
        headers = ["\n".join(textwrap.wrap(h, 16)) or " " for h in section.headers]
        cells = [["" if value is None else str(value) for value in row] for row in rows]
        # Each column as wide as its longest value or its header's longest line wants, in characters.
        widths = [
            max(6, *(len(line) for line in header.split("\n")), *(len(row[column]) for row in cells))
            for column, header in enumerate(headers)
        ]
        axes = page.add_axes((0.04, top - height, min(0.92, 0.0075 * sum(widths)), height))
        axes.axis("off")
        table = axes.table(
            cellText=cells, colLabels=headers, bbox=Bbox.from_bounds(0, 0, 1, 1), cellLoc="right", colLoc="center"
        )
        table.auto_set_font_size(False)
        table.set_fontsize(8)
        for (row, column), cell in table.get_celld().items():
            cell.set_height(2.5 if row == 0 else 1.0)  # relative: the table is fitted to its box
            cell.set_width(widths[column])
            if row == 0:
                cell.set_facecolor("#e8eef5")
            elif not _numeric(cells[row - 1][column]):
                cell.set_text_props(ha="left")
        top -= height + 0.03
    if page is not None:
        yield page


def _numeric(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True
