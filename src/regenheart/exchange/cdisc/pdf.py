"""The study report as PDF for the submission package, rendered from the self-contained HTML report.

Engine: WeasyPrint (pip package; needs Debian's Pango libraries, which ``scripts/demo.sh`` and
``scripts/test.sh`` install when missing). Chosen over headless Chromium because the main job must work on
a fresh machine with only Python, pip and root: WeasyPrint is a pip dependency plus two small system
libraries, whereas Chromium is a several-hundred-megabyte browser that regenheart only needs for browser
tests. WeasyPrint renders the report's inline CSS and inline SVG figures without a browser.
"""

from __future__ import annotations

from pathlib import Path


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
    """Render the HTML file ``html_path`` (A4, its own print CSS) to ``pdf_path``."""
    pdf_engine()
    import weasyprint

    pdf_path.parent.mkdir(parents=True, exist_ok=True)
    weasyprint.HTML(filename=str(html_path), base_url=str(html_path.parent)).write_pdf(str(pdf_path))
    return pdf_path
