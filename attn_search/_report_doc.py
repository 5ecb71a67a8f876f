"""The report as a list of blocks, rendered twice: markdown (``report.md``) and HTML.

The HTML page is self-contained: its style is inline, it loads no script and nothing from the
network, and its figures are the PNG files beside it, linked by relative name, so the folder
opens from disk (or from a copy of it) in any browser.
"""

from __future__ import annotations

import html
import re
from collections.abc import Sequence
from typing import Any

from attn_search.formatting import format_cell, is_number_cell, markdown_table

__all__ = ["Document"]

_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2em auto;
       max-width: 1100px; padding: 0 1em; color: #222; line-height: 1.45; }
h1 { font-size: 1.6em; } h2 { border-bottom: 1px solid #ddd; padding-bottom: .2em; }
table { border-collapse: collapse; margin: .5em 0 1em; font-size: .9em; }
th, td { border: 1px solid #ccc; padding: .2em .5em; text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
th { background: #f3f3f3; }
figure { margin: .5em 0 1.5em; }
figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption { font-size: .9em; color: #444; margin-top: .3em; }
.side { display: flex; flex-wrap: wrap; gap: 1.5em; align-items: flex-start; }
.side > figure { flex: 1 1 480px; } .side > ul { flex: 1 1 360px; }
code { background: #f3f3f3; padding: 0 .2em; border-radius: 3px; }
.note { color: #666; font-style: italic; }
"""


class Document:
    """Headings, paragraphs, lists, tables and figures, in order.

    Text is written in a small subset of markdown: `code` in backticks; everything else is
    literal. Table cells are plain text (escaped for each output here).

    Args:
        title: The page's title (the first heading).
    """

    def __init__(self, title: str):
        self.title = title
        self.blocks: list[tuple] = []

    def heading(self, level: int, text: str) -> None:
        self.blocks.append(("heading", level, text))

    def para(self, text: str) -> None:
        self.blocks.append(("para", text))

    def note(self, text: str) -> None:
        """A sentence saying what is missing, or why a part could not be made."""
        self.blocks.append(("note", text))

    def bullets(self, items: Sequence[str]) -> None:
        self.blocks.append(("bullets", list(items)))

    def table(self, columns: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
        self.blocks.append(("table", [str(c) for c in columns], [list(r) for r in rows]))

    def figure(self, name: str, alt: str, caption: str, beside: Sequence[str] = ()) -> None:
        """A PNG file `name` beside the report; `beside`: bullets shown next to it in HTML."""
        self.blocks.append(("figure", name, alt, caption, list(beside)))

    def drawn_figure(
        self, path: Any, draw: Any, *args: Any, alt: str, caption: str, beside: Sequence[str] = ()
    ) -> bool:
        """Draws a figure with `draw(*args, path)` and adds it; a failure adds one sentence.

        Returns:
            Whether the figure was drawn.
        """
        try:
            draw(*args, path)
        except Exception as exc:  # noqa: BLE001 - a figure must not cost the report
            self.note(f"(figure {path.name} skipped: {type(exc).__name__}: {exc})")
            return False
        self.figure(path.name, alt, caption, beside)
        return True

    # ------------------------------------------------------------------------------- markdown
    def to_markdown(self) -> str:
        lines = [f"# {self.title}", ""]
        for block in self.blocks:
            kind = block[0]
            if kind == "heading":
                lines += ["#" * block[1] + " " + block[2], ""]
            elif kind in ("para", "note"):
                lines += [block[1], ""]
            elif kind == "bullets":
                lines += [f"- {item}" for item in block[1]] + [""]
            elif kind == "table":
                rows = [[format_cell(c, markdown=True) for c in row] for row in block[2]]
                lines += markdown_table(block[1], rows) + [""]
            elif kind == "figure":
                _, name, alt, caption, beside = block
                lines += [f"- {item}" for item in beside] + ([""] if beside else [])
                lines += [f"![{alt}]({name})", "", f"*{caption}*", ""]
        return "\n".join(lines).rstrip() + "\n"

    # ----------------------------------------------------------------------------------- html
    def to_html(self) -> str:
        body = [f"<h1>{_inline(self.title)}</h1>"]
        for block in self.blocks:
            kind = block[0]
            if kind == "heading":
                level = min(6, block[1])
                body.append(f"<h{level}>{_inline(block[2])}</h{level}>")
            elif kind == "para":
                body.append(f"<p>{_inline(block[1])}</p>")
            elif kind == "note":
                body.append(f'<p class="note">{_inline(block[1])}</p>')
            elif kind == "bullets":
                body.append(_html_list(block[1]))
            elif kind == "table":
                body.append(_html_table(block[1], block[2]))
            elif kind == "figure":
                _, name, alt, caption, beside = block
                figure = (
                    f'<figure><img src="{html.escape(name)}" alt="{html.escape(alt)}">'
                    f"<figcaption>{_inline(caption)}</figcaption></figure>"
                )
                if beside:
                    figure = f'<div class="side">{figure}{_html_list(beside)}</div>'
                body.append(figure)
        return (
            '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
            f"<title>{html.escape(self.title)}</title>\n<style>{_CSS}</style>\n</head>\n"
            "<body>\n" + "\n".join(body) + "\n</body>\n</html>\n"
        )


def _inline(text: str) -> str:
    """Escapes HTML; `code` -> <code>code</code>."""
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", html.escape(str(text)))


def _html_list(items: Sequence[str]) -> str:
    return "<ul>" + "".join(f"<li>{_inline(item)}</li>" for item in items) + "</ul>"


def _html_table(columns: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join(
        "<tr>"
        + "".join(
            f'<td class="num">{html.escape(c)}</td>'
            if c and is_number_cell(c)
            else f"<td>{html.escape(c)}</td>"
            for c in row
        )
        + "</tr>"
        for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
