"""Render the study report: one self-contained ``report.html`` and a ``report.md`` twin.

A report is a list of :class:`Section` objects, each a sequence of blocks: a paragraph (plain
text), a :class:`Table` (a DataFrame) or a :class:`FigureRef` (a PNG on disk). The HTML embeds
every image as a base64 data URI and its CSS inline, so it opens offline and needs no script;
the Markdown links to the figures by path relative to the report.
"""

from __future__ import annotations

import base64
import dataclasses
import html
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from engine.runtime import atomic_write_text, format_p

__all__ = ["FigureRef", "Section", "Table", "format_value", "write_report"]

_CSS = """
body{font-family:-apple-system,"Segoe UI",Helvetica,Arial,sans-serif;max-width:1180px;
margin:0 auto;padding:1.5em 2em;color:#222;line-height:1.45;background:#fff}
h1{border-bottom:2px solid #2471a3;padding-bottom:.3em}
h2{margin-top:2em;border-bottom:1px solid #ddd;padding-bottom:.2em;color:#1b4f72}
h3{margin-top:1.4em;color:#333}
.scroll{overflow-x:auto;max-width:100%;margin:.6em 0 1.2em}
table{border-collapse:collapse;font-size:12.5px}
th,td{border:1px solid #d5d8dc;padding:3px 6px;text-align:right;white-space:nowrap}
th{background:#eaf2f8;white-space:normal;vertical-align:bottom;min-width:3.2em;max-width:8em;
overflow-wrap:break-word}
td.t,th.t{text-align:left}
td.long{white-space:normal;min-width:16em;max-width:32em}
th.p{background:#fcf3cf}
th:first-child,td:first-child{position:sticky;left:0;z-index:1;background:#fff;
box-shadow:1px 0 0 #d5d8dc}
th:first-child{background:#eaf2f8}
tr:nth-child(even) td{background:#f8f9f9}
figure{margin:1em 0 1.6em}
figure img{max-width:100%;height:auto;border:1px solid #eee}
figcaption{font-size:13px;color:#555}
p.note{font-size:13px;color:#555}
nav ul{columns:2;font-size:14px}
code{background:#f4f6f7;padding:0 3px}
@media print{
@page{size:A4 landscape;margin:12mm}
body{max-width:none;margin:0;padding:0;font-size:10pt;line-height:1.3}
h2{break-after:avoid;margin-top:1.2em}
h3{break-after:avoid}
.scroll{overflow:visible}
table{width:100%;font-size:7pt;break-inside:auto}
thead{display:table-header-group}
tr{break-inside:avoid}
th,td{white-space:normal;padding:1px 3px;min-width:0;max-width:none}
td.t{overflow-wrap:anywhere}
td.n{white-space:nowrap}
td.long{min-width:0}
th:first-child,td:first-child{position:static;box-shadow:none}
figure{break-inside:avoid}
figure img{max-height:170mm;width:auto;max-width:100%}
}
"""


@dataclasses.dataclass(frozen=True)
class Table:
    """A table block: a title, the frame and an optional note below it."""

    title: str
    frame: pd.DataFrame
    note: str = ""


@dataclasses.dataclass(frozen=True)
class FigureRef:
    """A figure block: a title, the PNG file and a caption."""

    title: str
    png: Path
    caption: str = ""


@dataclasses.dataclass(frozen=True)
class Section:
    """A report section: a title and its blocks (paragraph strings, tables, figures)."""

    title: str
    blocks: tuple[str | Table | FigureRef, ...]


def format_value(value: object, column: str = "") -> str:
    """Format one table cell of the report.

    Parameters
    ----------
    value
        The cell.
    column
        Its column: in a P-value column (``pvalue``, ``P``, ``*pvalue``, ``padj*``) a number
        is written by :func:`engine.runtime.format_p`, the one P-value rule of the project.

    Returns
    -------
    str
        ``NA`` for a missing value, ``yes``/``no`` for booleans, integers as they are, other
        numbers with 4 significant digits (scientific notation when very large or small).

    Examples
    --------
    >>> format_value(0.01234, "pvalue"), format_value(0.01234, "r"), format_value(None)
    ('0.012', '0.01234', 'NA')
    """
    if value is None or (isinstance(value, float) and np.isnan(value)) or value is pd.NA:
        return "NA"
    if isinstance(value, bool | np.bool_):
        return "yes" if value else "no"
    if isinstance(value, int | np.integer):
        return str(int(value))
    if isinstance(value, float | np.floating):
        v = float(value)
        if not np.isfinite(v):
            return str(v)
        if is_p_column(column):
            return format_p(v)
        if v != 0 and (abs(v) >= 1e5 or abs(v) < 1e-3):
            return f"{v:.3e}"
        return f"{v:.4g}"
    return str(value)


def is_p_column(column: str) -> bool:
    """Whether a table column holds P values (``pvalue``, ``P``, ``*pvalue``, ``padj*``).

    Examples
    --------
    >>> [is_p_column(c) for c in ("P", "padj (BH)", "wilcoxon_pvalue", "n pairs")]
    [True, True, True, False]
    """
    name = column.lower()
    return name in ("pvalue", "p") or name.endswith("pvalue") or name.startswith("padj")


_LONG_TEXT = 40  # characters: a text column with longer cells wraps on screen


def _html_table(table: Table) -> str:
    """The table in a horizontally scrolling box: text columns ``t`` (``long`` where their
    cells are long enough to need wrapping), numbers ``n``; P-value headers also ``p``."""
    frame = table.frame
    classes = []
    for c in frame.columns:
        if pd.api.types.is_numeric_dtype(frame[c]) or is_p_column(str(c)):
            classes.append("n")
        else:
            widest = frame[c].astype(str).str.len().max() if len(frame) else 0
            classes.append("t long" if widest > _LONG_TEXT else "t")
    head = "".join(
        f'<th class="{k}{" p" if is_p_column(str(c)) else ""}">{html.escape(str(c))}</th>'
        for c, k in zip(frame.columns, classes, strict=True)
    )
    rows = []
    for record in frame.itertuples(index=False):
        cells = "".join(
            f'<td class="{k}">{html.escape(format_value(v, str(c)))}</td>'
            for c, k, v in zip(frame.columns, classes, record, strict=True)
        )
        rows.append(f"<tr>{cells}</tr>")
    note = f'<p class="note">{html.escape(table.note)}</p>' if table.note else ""
    return (f'<h3>{html.escape(table.title)}</h3>\n<div class="scroll"><table><thead><tr>{head}'
            f"</tr></thead><tbody>{''.join(rows)}</tbody></table></div>{note}")


def _md_table(table: Table) -> str:
    frame = table.frame

    def cell(text: str) -> str:
        return text.replace("|", "\\|").replace("\n", " ")

    lines = [f"### {table.title}", "",
             "| " + " | ".join(cell(str(c)) for c in frame.columns) + " |",
             "|" + "|".join("---" for _ in frame.columns) + "|"]
    for record in frame.itertuples(index=False):
        lines.append("| " + " | ".join(cell(format_value(v, str(c)))
                                       for c, v in zip(frame.columns, record, strict=True)) + " |")
    if table.note:
        lines += ["", f"*{table.note}*"]
    return "\n".join(lines)


def _anchor(title: str) -> str:
    return "".join(ch if ch.isalnum() else "-" for ch in title.lower()).strip("-")


def write_report(
    sections: Sequence[Section], *, title: str, out_dir: str | os.PathLike[str], intro: str = ""
) -> tuple[Path, Path]:
    """Write ``report.html`` (self-contained) and ``report.md`` into ``out_dir``.

    Parameters
    ----------
    sections
        The report's sections, in order.
    title
        The report title.
    out_dir
        Output folder; figure paths are written relative to it in the Markdown.
    intro
        A paragraph under the title.

    Returns
    -------
    tuple of Path
        ``report.html`` and ``report.md``.
    """
    out = Path(out_dir)
    body = [f"<h1>{html.escape(title)}</h1>"]
    md = [f"# {title}", ""]
    if intro:
        body.append(f"<p>{html.escape(intro)}</p>")
        md += [intro, ""]
    body.append("<nav><ul>" + "".join(
        f'<li><a href="#{_anchor(s.title)}">{html.escape(s.title)}</a></li>' for s in sections
    ) + "</ul></nav>")
    for section in sections:
        body.append(f'<h2 id="{_anchor(section.title)}">{html.escape(section.title)}</h2>')
        md += [f"## {section.title}", ""]
        for block in section.blocks:
            if isinstance(block, Table):
                body.append(_html_table(block))
                md += [_md_table(block), ""]
            elif isinstance(block, FigureRef):
                data = base64.b64encode(Path(block.png).read_bytes()).decode("ascii")
                caption = html.escape(block.caption or block.title)
                body.append(
                    f'<figure><img src="data:image/png;base64,{data}" alt="{html.escape(block.title)}">'
                    f"<figcaption><b>{html.escape(block.title)}.</b> {caption}</figcaption></figure>"
                )
                rel = Path(os.path.relpath(block.png, out)).as_posix()
                md += [f"![{block.title}]({rel})", "", f"*{block.title}.* {block.caption}", ""]
            else:
                body.append(f"<p>{html.escape(str(block))}</p>")
                md += [str(block), ""]
    document = (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head>\n<body>\n"
        + "\n".join(body) + "\n</body></html>\n"
    )
    html_path, md_path = out / "report.html", out / "report.md"
    # each written atomically: a reader never sees half a report
    atomic_write_text(html_path, document)
    atomic_write_text(md_path, "\n".join(md).rstrip() + "\n")
    return html_path, md_path
