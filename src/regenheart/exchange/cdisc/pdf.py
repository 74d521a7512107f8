"""The study report as PDF for the submission package, rendered from the self-contained HTML report.

Engine: WeasyPrint (pip package; needs Debian's Pango libraries, which ``scripts/demo.sh`` and
``scripts/test.sh`` install when missing). Chosen over headless Chromium because the main job must work on
a fresh machine with only Python, pip and root: WeasyPrint is a pip dependency plus two small system
libraries, whereas Chromium is a several-hundred-megabyte browser that regenheart only needs for browser
tests. WeasyPrint renders the report's inline CSS and its SVG figures (handed to it as images of the same
SVG, :func:`figures_as_images`) without a browser.
"""

from __future__ import annotations

import base64
import gc
import re
import time
from html import escape as html_escape
from html import unescape as html_unescape
from pathlib import Path
from typing import Any

from regenheart import forked


class PdfEngineUnavailable(RuntimeError):
    """WeasyPrint or its system libraries are missing; the message says how to install them."""


def pdf_engine() -> str:
    """Name and version of the PDF engine ('WeasyPrint 70.0'); raises :class:`PdfEngineUnavailable`."""
    try:
        import weasyprint
    except (ImportError, OSError) as exc:  # OSError: the Pango/HarfBuzz shared libraries cannot be loaded
        raise PdfEngineUnavailable(
            f"the PDF engine WeasyPrint cannot be loaded ({str(exc).splitlines()[0]}); install it with "
            "'pip install weasyprint' and Debian's 'libpango-1.0-0 libpangoft2-1.0-0' (scripts/demo.sh does both)"
        ) from None
    return f"WeasyPrint {weasyprint.__version__}"


def render_pdf(html_path: Path, pdf_path: Path) -> Path:
    """Render the HTML file ``html_path`` (A4, its own print CSS) to ``pdf_path``; its inline SVG figures
    are drawn from images of the same SVG (see :func:`figures_as_images`)."""
    pdf_engine()
    import weasyprint

    pdf_path.parent.mkdir(parents=True, exist_ok=True)
    html = figures_as_images(html_path.read_text(encoding="utf-8"))
    weasyprint.HTML(string=html, base_url=str(html_path.parent)).write_pdf(str(pdf_path))
    return pdf_path


_SVG_NAMESPACES = 'xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink" '
# A figure as regenheart.report.figures.to_svg writes it: <svg class="figure-svg" ...>, never nested.
_INLINE_FIGURE = re.compile(r'<svg class="figure-svg"(?P<attrs>[^>]*)>(?P<body>.*?)</svg>', re.DOTALL)


def figures_as_images(html: str) -> str:
    """``html`` with each inline SVG figure (``<svg class="figure-svg">``) replaced by an ``<img>`` of the
    same SVG (a ``data:`` URI) of the same width, its title as the alternative text.

    The PDF is the same (compared page by page as images at 150 dpi) and its figure labels are still
    text; but WeasyPrint parses and styles every element of an inline SVG as HTML and then again as SVG,
    whereas an image it parses once: a tenth of the report's rendering.
    """
    def as_image(match: re.Match[str]) -> str:
        attrs, body = match.group("attrs"), match.group("body")
        width = re.search(r'style="(max-width:[\d.]+pt)"', attrs)
        title = re.search(r"<title>(.*?)</title>", body, re.DOTALL)
        svg = f'<svg {_SVG_NAMESPACES}class="figure-svg"{attrs}>{body}</svg>'
        source = "data:image/svg+xml;base64," + base64.b64encode(svg.encode("utf-8")).decode("ascii")
        style = f' style="width:100%;{width.group(1)}"' if width else ' style="width:100%"'
        alt = html_escape(html_unescape(title.group(1)), quote=True) if title else ""
        return f'<img class="figure-svg"{style} alt="{alt}" src="{source}">'

    return _INLINE_FIGURE.sub(as_image, html)


# A one-page document with a table: rendering it loads the fonts and the layout code a report needs.
_WARM_UP = "<html><body><h1>warm-up</h1><p>text <b>bold</b></p><table><tr><th>a</th><td>1.0</td></tr></table></body></html>"


def _warm_up() -> None:
    import io

    import weasyprint

    weasyprint.HTML(string=_WARM_UP).write_pdf(io.BytesIO())


def _render_worker(link: Any) -> float | None:
    """Child process of :class:`PdfRender`: load the engine, say which it is, render the job it is sent."""
    with forked.long_lived():  # the engine and its fonts
        try:
            link.send(("engine", pdf_engine()))
        except PdfEngineUnavailable as exc:
            link.send(("unavailable", str(exc)))
            return None
        _warm_up()
    job = link.recv()
    if job is None:  # the caller needs no PDF after all
        return None
    # This process ends after this one render, and its garbage with it. The collector's passes over the
    # growing box tree cost about a fifth of the render and free almost nothing (the demo's report: peak
    # memory 147 MB with them, 148 MB without).
    gc.disable()
    started = time.perf_counter()
    render_pdf(*job)
    return time.perf_counter() - started


class PdfRender:
    """The report PDF rendered beside other work: :meth:`start` forks a child process that loads WeasyPrint
    and its fonts at once, :meth:`render` hands it the report when it exists, :meth:`result` waits for the
    file. Without ``fork`` (see :mod:`regenheart.forked`) :meth:`render` renders in this process."""

    def __init__(self, worker: forked.Forked[float | None] | None):
        self._worker = worker
        self._engine: tuple[str, str] | None = None
        self._seconds: float | None = None
        self._error: Exception | None = None
        self.target: Path | None = None

    @classmethod
    def start(cls, *, niceness: int = 0) -> PdfRender:
        """Fork the rendering process (it loads the engine while the caller goes on). ``niceness``: see
        :func:`regenheart.forked.start` (the engine loads long before the report exists)."""
        return cls(forked.start_linked("report-pdf", _render_worker, niceness=niceness) if forked.can_fork()
                   else None)

    def engine(self) -> str:
        """Name and version of the engine (as :func:`pdf_engine`); raises :class:`PdfEngineUnavailable`."""
        if self._engine is None:
            if self._worker is None:
                try:
                    self._engine = ("engine", pdf_engine())
                except PdfEngineUnavailable as exc:
                    self._engine = ("unavailable", str(exc))
            else:
                try:
                    self._engine = self._worker.link.recv()
                except EOFError:  # the child died before it could answer: its exit is reported by result()
                    self._worker.result()
                    raise
        kind, text = self._engine
        if kind != "engine":
            raise PdfEngineUnavailable(text)
        return text

    def render(self, html_path: Path, pdf_path: Path) -> None:
        """Render ``html_path`` to ``pdf_path`` (in the child: returns at once). Call :meth:`engine` first."""
        self.engine()
        self.target = pdf_path
        if self._worker is None:
            started = time.perf_counter()
            try:
                render_pdf(html_path, pdf_path)
            except Exception as exc:  # noqa: BLE001 - raised by result(), as the child's would be
                self._error = exc
            self._seconds = time.perf_counter() - started
        else:
            self._worker.link.send((html_path, pdf_path))

    def result(self) -> float:
        """Wait for the PDF of :meth:`render`; the seconds rendering took. Raises what rendering raised."""
        if self._worker is not None:
            seconds = self._worker.result()
            return float(seconds or 0.0)
        if self._error is not None:
            raise self._error
        return float(self._seconds or 0.0)

    @property
    def cpu_seconds(self) -> float | None:
        """CPU time of the rendering process (loading the engine included), once :meth:`result` returned."""
        return self._worker.cpu_seconds if self._worker is not None else self._seconds

    def cancel(self) -> None:
        """Stop the rendering process and remove its unfinished file (no PDF is needed, or the caller failed)."""
        if self._worker is not None:
            self._worker.cancel()
        if self.target is not None:
            self.target.unlink(missing_ok=True)
            self.target = None
