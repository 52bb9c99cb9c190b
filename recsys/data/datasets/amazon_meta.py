"""Names of Amazon items: the local ``item_meta.tsv`` and McAuley's product metadata.

``item_meta.tsv`` (amazon-beauty) holds ``item_id`` (1-based S3-Rec id), ``asin`` and the
item's attribute names, ``|``-joined: the brand first where S3-Rec kept it, then the
category path without its ``Beauty`` root (``OPI|Makeup|Nails|Nail Polish``).
``meta_<Category>.json.gz`` (J. McAuley et al., "Image-based recommendations on styles and
substitutes", SIGIR 2015; snap.stanford.edu/data/amazon/productGraph) holds one product per
line, a Python dict literal (``{'asin': ..., 'title': ..., 'brand': ..., ...}``); strict
JSON lines are read too.
"""

from __future__ import annotations

import ast
import gzip
import html
import json
import re
from collections.abc import Iterable
from pathlib import Path

from recsys.data.datasets.parsing import malformed
from recsys.errors import DataError

PLACEHOLDER_BRANDS = ("", "Unknown")  # brands that name no brand: the text gets ""
_ASIN = re.compile(r"""['"]asin['"]\s*:\s*['"]([^'"]+)['"]""")


def read_item_meta_tsv(path: Path, n_items: int) -> list[tuple[str, list[str]] | None]:
    """``(asin, attribute names)`` of every 0-based item, ``None`` for items without a row.

    Raises:
        DataError: a line without 3 tab-separated fields, an item id outside
            ``1..n_items`` or an item on two lines (naming the line).
    """
    expected = f"'item_id<TAB>asin<TAB>name|name...' with item_id in 1..{n_items}, each once"
    rows: list[tuple[str, list[str]] | None] = [None] * n_items
    with open(path, encoding="utf-8", errors="replace") as fh:
        next(fh, None)  # header
        for number, line in enumerate(fh, 2):
            if not line.strip():
                continue
            fields = line.rstrip("\r\n").split("\t")
            ok = len(fields) == 3 and fields[0].isdigit() and 1 <= int(fields[0]) <= n_items
            if not ok or rows[int(fields[0]) - 1] is not None:
                raise malformed(path, number, line, expected)
            rows[int(fields[0]) - 1] = (fields[1].strip(), fields[2].split("|") if fields[2] else [])
    return rows


def split_brands(lists: list[list[str]]) -> list[tuple[str, list[str]]]:
    """Split each item's attribute names into ``(brand, categories)``; brand ``""`` if none.

    S3-Rec writes the brand first only where it kept it, so whether the first name is a
    brand is read off the data. Every item has a category path, so a lone name is a
    category. A name that is first in a longer list and at no later position in any list
    never acts as a category: it is a brand (Beauty: 435 names, ``OPI``, ``Unknown``,
    ``""``...). The names that directly follow such a brand are the root categories (Beauty:
    the 6 of ``Makeup``, ``Skin Care``, ``Hair Care``, ``Tools & Accessories``, ``Bath &
    Body``, ``Fragrance``). The first name of a longer list is a brand when it is such a
    name, or when the second name is a root category: a category path starts at its root,
    so a root in second place means the first name was a brand that shares its name with a
    category (Beauty: ``Scissors``, ``Retinol`` and ``Skin Care``, 4 items).
    """
    later = {name for names in lists for name in names[1:]}
    brand_only = {names[0] for names in lists if len(names) > 1 and names[0] not in later}
    roots = {names[1] for names in lists if len(names) > 1 and names[0] in brand_only}
    out = []
    for names in lists:
        if len(names) > 1 and (names[0] in brand_only or names[1] in roots):
            out.append((names[0], names[1:]))
        else:
            out.append(("", names))
    return out


def name_text(name: str) -> str:
    """An attribute name as text: HTML entities decoded (``Burt&#39;s Bees``), spaces collapsed."""
    return " ".join(html.unescape(name).split())


def brand_text(name: str) -> str:
    """A brand as text (:func:`name_text`); the placeholders ``Unknown`` and ``""`` give ``""``."""
    name = name_text(name)
    return "" if name in PLACEHOLDER_BRANDS else name


def read_amazon_meta(path: Path, asins: Iterable[str]) -> dict[str, dict]:
    """The records of ``asins`` in a McAuley metadata file (gzip or plain text).

    Only lines whose ``asin`` is wanted are parsed (the file holds every product of the
    category); a wanted line that is neither a Python dict literal nor a JSON object raises.

    Returns:
        asin -> the product's dict (``title``, ``brand``, ``categories``...); the first line
        of an asin wins.
    """
    wanted = set(asins)
    found: dict[str, dict] = {}
    opener = gzip.open if path.suffix == ".gz" else open
    expected = "a Python dict or JSON object with an 'asin' key"
    try:
        with opener(path, "rt", encoding="utf-8", errors="replace") as fh:
            for number, line in enumerate(fh, 1):
                match = _ASIN.search(line)
                if match is None or match.group(1) not in wanted or match.group(1) in found:
                    continue
                record = _parse_record(line)
                if not isinstance(record, dict) or record.get("asin") != match.group(1):
                    raise malformed(path, number, line, expected)
                found[match.group(1)] = record
    except (OSError, EOFError) as exc:  # not gzip, truncated download
        raise DataError(f"cannot read {path} ({type(exc).__name__}: {exc}); delete it and download it again") from None
    return found


def _parse_record(line: str) -> object:
    try:
        return json.loads(line)
    except ValueError:
        pass
    try:
        return ast.literal_eval(line.strip())
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return None


def title_text(record: dict | None) -> str:
    """A product's title with HTML entities decoded and whitespace collapsed; ``""`` if none."""
    title = record.get("title") if record else None
    return name_text(title) if isinstance(title, str) else ""
