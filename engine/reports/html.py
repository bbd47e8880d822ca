"""Small self-contained HTML reports with matplotlib figures embedded as PNG.

QGIS's Results Viewer opens an algorithm's HTML outputs; a report is one
file (images inline as ``data:image/png;base64``), written beside its target
and renamed. Figures use matplotlib's object API (:class:`~matplotlib.figure.Figure`
drawn on an Agg canvas): no pyplot, no backend switch, safe in a worker
thread of QGIS.
"""

import base64
import html
import io
import math
import os

from ..dependencies import require
from ..errors import TesseraError


def new_figure(width=7.0, height=4.0):
    """A matplotlib Figure on its own Agg canvas."""
    require("matplotlib", purpose="The HTML report's figures")
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(figure)
    return figure


def figure_png(figure):
    """The figure as PNG bytes."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


def number(value, digits=6):
    """A number for a table cell: integers as such, floats to ``digits`` significant digits,
    NaN/None as an empty cell."""
    if value is None:
        return ""
    if isinstance(value, (int,)) and not isinstance(value, bool):
        return str(value)
    value = float(value)
    if math.isnan(value):
        return ""
    return f"{value:.{digits}g}"


class HtmlReport:
    """Headings, paragraphs, tables and figures, in order."""

    STYLE = ("body{font-family:sans-serif;margin:1em 2em;color:#222}"
             "table{border-collapse:collapse;margin:0.5em 0 1em}"
             "th,td{border:1px solid #bbb;padding:2px 8px;text-align:right}"
             "th{background:#eee}td.name,th.name{text-align:left}"
             "img{max-width:100%;display:block;margin:0.5em 0 1em}")

    def __init__(self, title):
        self.title = title
        self.parts = [f"<h1>{html.escape(title)}</h1>"]

    def heading(self, text, level=2):
        self.parts.append(f"<h{level}>{html.escape(text)}</h{level}>")

    def paragraph(self, text):
        self.parts.append(f"<p>{html.escape(text)}</p>")

    def table(self, header, rows, name_columns=1, table_id=None):
        """A table; the first ``name_columns`` columns are left-aligned text."""
        attribute = f' id="{html.escape(table_id)}"' if table_id else ""
        lines = [f"<table{attribute}><tr>"]
        for index, cell in enumerate(header):
            css = ' class="name"' if index < name_columns else ""
            lines.append(f"<th{css}>{html.escape(str(cell))}</th>")
        lines.append("</tr>")
        for row in rows:
            lines.append("<tr>")
            for index, cell in enumerate(row):
                css = ' class="name"' if index < name_columns else ""
                lines.append(f"<td{css}>{html.escape(str(cell))}</td>")
            lines.append("</tr>")
        lines.append("</table>")
        self.parts.append("".join(lines))

    def figure(self, figure, alt):
        data = base64.b64encode(figure_png(figure)).decode("ascii")
        self.parts.append(f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">')

    def html(self):
        return ("<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\">"
                f"<title>{html.escape(self.title)}</title><style>{self.STYLE}</style></head>"
                "<body>\n" + "\n".join(self.parts) + "\n</body></html>\n")

    def write(self, path):
        """Write the report to ``path`` (its folder created when missing; under a temporary
        name beside it, renamed when complete); returns it."""
        from ..io.output_safety import Publication

        path = os.fspath(path)
        try:
            os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        except OSError as error:
            raise TesseraError(f"Cannot create the folder of the report {path}: "
                               f"{error.strerror or error}") from None
        with Publication() as publication:
            temporary = publication.add(path)
            try:
                with open(temporary, "w", encoding="utf-8") as stream:
                    stream.write(self.html())
            except OSError as error:
                raise TesseraError(f"Cannot write the report {path}: "
                                   f"{error.strerror or error}") from None
        return path
