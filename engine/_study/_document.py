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
table{border-collapse:collapse;margin:.6em 0 1.2em;font-size:12.5px;display:block;
overflow-x:auto;max-width:100%}
th,td{border:1px solid #d5d8dc;padding:3px 7px;text-align:right;white-space:nowrap}
th{background:#eaf2f8;position:sticky;top:0}
td.t,th.t{text-align:left}
tr:nth-child(even) td{background:#f8f9f9}
figure{margin:1em 0 1.6em}
figure img{max-width:100%;height:auto;border:1px solid #eee}
figcaption{font-size:13px;color:#555}
p.note{font-size:13px;color:#555}
nav ul{columns:2;font-size:14px}
code{background:#f4f6f7;padding:0 3px}
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
        name = column.lower()
        if name in ("pvalue", "p") or name.endswith("pvalue") or name.startswith("padj"):
            return format_p(v)
        if v != 0 and (abs(v) >= 1e5 or abs(v) < 1e-3):
            return f"{v:.3e}"
        return f"{v:.4g}"
    return str(value)


def _html_table(table: Table) -> str:
    frame = table.frame
    text_cols = {c for c in frame.columns if not pd.api.types.is_numeric_dtype(frame[c])}
    head = "".join(
        f'<th class="{"t" if c in text_cols else "n"}">{html.escape(str(c))}</th>'
        for c in frame.columns
    )
    rows = []
    for record in frame.itertuples(index=False):
        cells = "".join(
            f'<td class="{"t" if c in text_cols else "n"}">{html.escape(format_value(v, str(c)))}</td>'
            for c, v in zip(frame.columns, record, strict=True)
        )
        rows.append(f"<tr>{cells}</tr>")
    note = f'<p class="note">{html.escape(table.note)}</p>' if table.note else ""
    return (f"<h3>{html.escape(table.title)}</h3>\n<table><thead><tr>{head}</tr></thead>"
            f"<tbody>{''.join(rows)}</tbody></table>{note}")


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
