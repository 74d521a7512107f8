"""The report PDF: inline SVG figures are handed to the engine as images of the same SVG, laid out alike."""

from __future__ import annotations

import base64
import re

import pytest
from lxml import etree
from matplotlib.figure import Figure

from regenheart.exchange.cdisc.pdf import PdfEngineUnavailable, figures_as_images, pdf_engine
from regenheart.report.figures import to_svg

SVG = "{http://www.w3.org/2000/svg}"


def _figure_svg(title: str = "LVEF & NT-proBNP <by visit>") -> str:
    fig = Figure(figsize=(4, 2.5))
    ax = fig.subplots()
    ax.plot([0, 1, 3, 6], [30, 33, 35, 36], marker="o")
    ax.set_xlabel("Month")
    return to_svg(fig, "fig-test", title)


def _page(figure: str, figure_width: str = "auto") -> str:
    return ("<html><head><style>figure .figure-svg { height: auto; display: block; }</style></head><body>"
            f'<p>Before</p><figure style="width:{figure_width}">{figure}<figcaption>Caption</figcaption></figure>'
            '<svg class="icon" width="10" height="10"><rect width="10" height="10"/></svg><p>After</p></body></html>')


def _decoded(img_tag: str) -> etree._Element:
    source = re.search(r'src="data:image/svg\+xml;base64,([^"]+)"', img_tag).group(1)
    return etree.fromstring(base64.b64decode(source))


def test_each_figure_becomes_an_image_of_the_same_svg_and_the_rest_is_untouched():
    figure = _figure_svg()
    page = _page(figure)
    converted = figures_as_images(page)
    img = re.search(r"<img [^>]*>", converted).group(0)
    assert 'class="figure-svg"' in img and 'style="width:100%;max-width:288pt"' in img
    assert 'alt="LVEF &amp; NT-proBNP &lt;by visit&gt;"' in img  # the figure's title, escaped once
    root = _decoded(img)  # well-formed SVG in the SVG namespace, with every element of the inline figure
    assert root.tag == f"{SVG}svg" and root.get("viewBox") == re.search(r'viewBox="([^"]+)"', figure).group(1)
    inline = etree.fromstring(figure.replace("<svg ", f'<svg xmlns="{SVG[1:-1]}" '
                                             'xmlns:xlink="http://www.w3.org/1999/xlink" ', 1).encode())
    assert [e.tag for e in root.iter()] == [e.tag for e in inline.iter()]
    assert '<svg class="figure-svg"' not in converted
    assert '<svg class="icon" width="10" height="10">' in converted  # only figures are converted
    assert converted.startswith("<html><head>") and "<p>Before</p>" in converted and "<p>After</p>" in converted
    assert figures_as_images(converted) == converted  # nothing left to convert


def test_a_page_without_figures_is_returned_as_it_is():
    page = "<html><body><p>No figures</p><svg><circle r='2'/></svg></body></html>"
    assert figures_as_images(page) == page


def _engine_or_skip() -> None:
    try:
        pdf_engine()
    except PdfEngineUnavailable as exc:
        pytest.skip(str(exc))


def _replaced_boxes(html: str) -> list[tuple[int, float, float, float, float]]:
    """(page, x, y, width, height) of every image or inline SVG WeasyPrint laid out."""
    import weasyprint
    from weasyprint.formatting_structure.boxes import ReplacedBox

    document = weasyprint.HTML(string=html).render()
    found = []
    for number, page in enumerate(document.pages):
        for box in page._page_box.descendants():
            if isinstance(box, ReplacedBox):
                found.append((number, round(box.content_box_x(), 3), round(box.content_box_y(), 3),
                              round(box.width, 3), round(box.height, 3)))
    return found


@pytest.mark.parametrize("figure_width", ["auto", "150pt"])  # wider than the figure's 288 pt, and narrower
def test_the_image_is_laid_out_where_and_as_large_as_the_inline_figure(figure_width):
    _engine_or_skip()
    page = _page(_figure_svg(), figure_width)
    inline, as_images = _replaced_boxes(page), _replaced_boxes(figures_as_images(page))
    assert len(inline) == 2 and inline == as_images  # the figure and the icon, same page, place and size
    assert inline[0][3] == pytest.approx(288 * 4 / 3 if figure_width == "auto" else 150 * 4 / 3)  # CSS px
