"""Every page a demo user can reach: found by following the links of their pages from home, as a
person clicking through would, not by a hand-kept list that goes stale when a page is added.

Pages of one shape (the same route with another lot, kit or participant) render the same template,
so a few of each shape are enough; the walk stays within seconds yet covers every template a role
reaches. Files (PDF, CSV, ZPL, images) are collected apart: the CSV exports are checked too.
"""
from __future__ import annotations

import html
import re
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from cellbench import demo

# Every demo person, one per role (the second site's people see the same pages for another site).
DEMO_ROLES = [username for username, _, _ in demo.DEMO_USERS]

FILES = (".pdf", ".csv", ".zpl", ".png", ".svg", ".txt", ".json", ".zip")
# Links that are not pages to read: signing out ends the walk; the API speaks JSON.
SKIP = ("/logout", "/api/", "/static/", "/docs", "/openapi", "/redoc")

HREF = re.compile(r'<a\b[^>]*\bhref="([^"#]*)(?:#[^"]*)?"', re.I)


def shape(url: str) -> str:
    """The route a URL renders: segments that hold a number or a code become '*', the query keeps
    its names only (/lots/ASC-2026-0001/qc?x=1 -> /lots/*/qc?x)."""
    parts = urlsplit(url)
    segments = ["*" if re.search(r"\d", s) or re.fullmatch(r"[A-Z0-9-]{5,}", s) else s
                for s in parts.path.split("/")]
    names = sorted({pair.split("=")[0] for pair in parts.query.split("&") if pair})
    return "/".join(segments) + ("?" + "&".join(names) if names else "")


@dataclass
class Walk:
    pages: dict[str, str] = field(default_factory=dict)  # url -> html
    files: set[str] = field(default_factory=set)
    broken: list[tuple[str, int, str]] = field(default_factory=list)  # url, status, the page linking to it


def links(page_html: str) -> list[str]:
    found = []
    for href in HREF.findall(page_html):
        href = html.unescape(href).strip()
        if not href.startswith("/") or href.startswith("//") or href.startswith(SKIP):
            continue
        found.append(href)
    return found


def walk(get: Callable[[str], tuple[int, str]], *, per_shape: int = 2, limit: int = 400,
         skip_shapes: Iterable[str] = ()) -> Walk:
    """Breadth-first from home through the links a user's pages show. `get(url)` -> (status, html).
    Shapes in `skip_shapes` (already seen under another role) are visited once, not `per_shape` times."""
    result = Walk()
    seen_shapes: dict[str, int] = {}
    done_elsewhere = set(skip_shapes)
    queue, queued = deque([("/", "")]), {"/"}
    while queue and len(result.pages) < limit:
        url, source = queue.popleft()
        status, text = get(url)
        if status != 200:
            result.broken.append((url, status, source))
            continue
        result.pages[url] = text
        for href in links(text):
            if href in queued:
                continue
            if urlsplit(href).path.endswith(FILES):
                result.files.add(href)
                continue
            kind = shape(href)
            allowed = 1 if kind in done_elsewhere else per_shape
            if seen_shapes.get(kind, 0) >= allowed:
                continue
            seen_shapes[kind] = seen_shapes.get(kind, 0) + 1
            queued.add(href)
            queue.append((href, url))
    return result


CODES = re.compile(r"<(code|pre|kbd)\b.*?</\1>|<span class=\"(?:code|kitno)[^\"]*\">[^<]*</span>", re.S | re.I)


def visible_text(page_html: str, *, codes: bool = True) -> str:
    """What a person reads: the page without its scripts, styles, tags and attributes; without the
    codes set apart as codes (<code>, .code, .kitno) when `codes` is False."""
    body = re.sub(r"<(script|style)\b.*?</\1>", " ", page_html, flags=re.S | re.I)
    if not codes:  # the tab's title repeats the heading, whose codes are marked as such
        body = CODES.sub(" ", re.sub(r"<title>.*?</title>", " ", body, flags=re.S))
    body = re.sub(r"<[^>]+>", " ", body)
    return " ".join(html.unescape(body).split())
