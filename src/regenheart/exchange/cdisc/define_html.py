"""define.xml rendered as HTML for a reviewer's browser, with regenheart's own XSLT 1.0 stylesheet.

Browsers refuse XSLT on local files (``file://``), so the package carries ``define.html`` beside define.xml;
the stylesheet is copied too (define.xml names it in its ``xml-stylesheet`` instruction) for servers that
serve the XML. CDISC's published stylesheet is MIT-licensed by its author; regenheart ships its own instead,
so every file in the package is the project's.
"""

from __future__ import annotations

import functools
import shutil
from pathlib import Path

from lxml import etree

from regenheart.exchange.cdisc.define import STYLESHEET

STYLESHEET_FILE = Path(__file__).with_name(STYLESHEET)


@functools.lru_cache(maxsize=1)
def _transform() -> etree.XSLT:
    return etree.XSLT(etree.parse(str(STYLESHEET_FILE)))


def define_html(tree: etree._ElementTree) -> str:
    """The HTML page of a Define-XML document."""
    return str(_transform()(tree))


def write_define_html(tree: etree._ElementTree, path: Path) -> Path:
    """Write ``define.html`` for ``tree`` at ``path`` and copy the stylesheet beside it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(define_html(tree), encoding="utf-8")
    shutil.copyfile(STYLESHEET_FILE, path.with_name(STYLESHEET))
    return path
