"""The HTML audit: self-contained, escaped, and checked in a real headless Chromium."""

from __future__ import annotations

import os
import re
import shutil
import struct
import subprocess
import zlib
from collections import Counter
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path

import pandas as pd
import pytest

from dsaudit.judge.findings import SEVERITIES, AuditResult
from dsaudit.reports.audit_html import render_html
from dsaudit.reports.audit_html_sections import DETAILED_FINDINGS
from dsaudit.reports.audit_output import write_audit
from tests.reports.audit_data import ATTR_NAME, SCRIPT_NAME, build_result, empty_result

CHROMIUM = shutil.which("chromium")
VOID = {"meta", "br", "hr", "img", "input", "link", "col", "wbr", "source", "area", "base"}
SVG_LEAVES = {"rect", "line", "circle", "path"}
EXTERNAL = re.compile(r"""\b(?:src|href|action|poster|srcset)\s*=\s*["']?\s*(?:[a-z]+:)?//""", re.I)
BANNER_RED = (0xB4, 0x23, 0x18)


@dataclass
class Page(HTMLParser):
    """Tags, attributes and text of a document, with a check that every element closes."""

    tags: Counter[str] = field(default_factory=Counter)
    classes: Counter[str] = field(default_factory=Counter)
    attrs: list[tuple[str, str, str]] = field(default_factory=list)
    text: list[str] = field(default_factory=list)
    inside: dict[str, list[str]] = field(default_factory=dict)
    stack: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        super().__init__(convert_charrefs=True)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags[tag] += 1
        for name, value in attrs:
            self.attrs.append((tag, name, value or ""))
            if name == "class":
                self.classes[f"{tag}.{'.'.join(sorted((value or '').split()))}"] += 1
        if tag not in VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)
        if tag not in VOID:
            self.stack.pop()

    def handle_endtag(self, tag: str) -> None:
        assert self.stack and self.stack[-1] == tag, f"</{tag}> closes {self.stack[-3:]}"
        self.stack.pop()

    def handle_data(self, data: str) -> None:
        self.text.append(data)
        if self.stack:
            self.inside.setdefault(self.stack[-1], []).append(data)

    @property
    def all_text(self) -> str:
        return "".join(self.text)


def parse(html: str) -> Page:
    page = Page()
    page.feed(html)
    page.close()
    return page


# ------------------------------------------------------------------ static checks


def test_page_is_self_contained_and_well_formed() -> None:
    for result in (build_result(), empty_result()):
        html = render_html(result)
        assert not EXTERNAL.search(html)
        assert "@import" not in html and "url(" not in html
        lowered = html.lower()
        for tag in ("<script", "<link", "<img", "<iframe", "<object", "<embed", "<base"):
            assert tag not in lowered, tag
        assert "content=\"default-src 'none'; style-src 'unsafe-inline'" in html
        page = parse(html)
        assert page.stack == []  # every element opened was closed, in order
        hrefs = [v for tag, name, v in page.attrs if name == "href"]
        assert hrefs and all(h.startswith("#") for h in hrefs)


def test_hostile_strings_are_escaped_in_text_and_attributes() -> None:
    html = render_html(build_result())
    assert SCRIPT_NAME not in html and ATTR_NAME not in html
    assert "&lt;script&gt;document.querySelector(&quot;h1&quot;)" in html
    assert (
        "&quot;&gt;&lt;img src=x onerror=&quot;document.title=&#x27;pwned&#x27;&quot;&gt;" in html
    )
    # Controls and bidi overrides are shown, not sent to the browser.
    assert "\x1b" not in html and "\u202e" not in html
    assert "\\x1b[2J\\x1b[31mevil.example" in html and "\\u202emoc.evil" in html
    page = parse(html)
    titles = [v for tag, name, v in page.attrs if tag == "td" and name == "title"]
    assert any(ATTR_NAME in t for t in titles)  # intact as an attribute value, not markup


def _many_findings(extra: int) -> AuditResult:
    """The example audit plus ``extra`` medium findings, the last one with a hostile name."""
    result = build_result()
    base = result.findings.iloc[[0]]
    rows = pd.concat([base] * extra, ignore_index=True)
    rows["finding_id"] = range(1000, 1000 + extra)
    rows["severity"] = pd.Categorical(["medium"] * extra, categories=SEVERITIES, ordered=True)
    rows["host"] = [f"10.9.{i // 250}.{i % 250}" for i in range(extra)]
    rows["message"] = [f"finding number {i}" for i in range(extra - 1)] + [SCRIPT_NAME]
    findings = pd.concat([result.findings, rows], ignore_index=True)
    return AuditResult(
        result.flows,
        findings,
        result.expectations,
        result.compliance,
        result.heartbeats,
        result.summary,
    )


def test_many_findings_keep_the_page_short_and_complete() -> None:
    result = _many_findings(250)
    medium = int((result.findings["severity"].astype(str) == "medium").sum())
    assert medium > DETAILED_FINDINGS + 100
    html = render_html(result)
    page = parse(html)
    assert page.stack == []
    section = html[html.index("<h3>Medium") :]
    section = section[: section.find("<h3>", 4) if "<h3>" in section[4:] else len(section)]
    # The first hundred in full, with their flows; every other one a row of one table.
    assert section.count('<article class="finding medium">') == DETAILED_FINDINGS
    compact = section[section.index('class="findings-compact"') :]
    assert compact.count("<tr>") - 1 == medium - DETAILED_FINDINGS
    for i in range(249):
        assert html.count(f">finding number {i}<") == 1, i
    assert SCRIPT_NAME not in html and "&lt;script&gt;" in compact
    # Other severities are untouched.
    assert html.count('<article class="finding critical">') == int(
        (result.findings["severity"].astype(str) == "critical").sum()
    )


# ------------------------------------------------------------------ in a browser


def _chromium(profile: Path, *args: str) -> subprocess.CompletedProcess[str]:
    command = [
        str(CHROMIUM),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
        f"--user-data-dir={profile}",
        *args,
    ]
    return subprocess.run(command, capture_output=True, text=True, timeout=180, check=False)


@dataclass
class Rendered:
    dom: Page
    png: bytes


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> Rendered:
    if CHROMIUM is None:
        pytest.skip("chromium is not installed")
    tmp = tmp_path_factory.mktemp("browser")
    report = tmp / "audit.html"
    write_audit(build_result(), "html", str(report))
    dumped = _chromium(tmp / "profile", "--dump-dom", report.as_uri())
    assert dumped.returncode == 0, dumped.stderr[-2000:]
    shot = tmp / "shot.png"
    taken = _chromium(
        tmp / "profile", f"--screenshot={shot}", "--window-size=1280,2000", report.as_uri()
    )
    assert taken.returncode == 0 and shot.exists(), taken.stderr[-2000:]
    keep = os.environ.get("DSAUDIT_KEEP_SCREENSHOT")
    if keep:  # for a person to look at the design
        shutil.copyfile(shot, keep)
    return Rendered(parse(dumped.stdout), shot.read_bytes())


def test_browser_ran_no_hostile_code(rendered: Rendered) -> None:
    dom = rendered.dom
    assert "".join(dom.inside["h1"]) == "Not compliant"
    # The first <title> is the document's; the others are the SVG marks' tooltips.
    assert dom.inside["title"][0] == "Deep Security traffic audit: NOT COMPLIANT"
    assert dom.tags["script"] == 0 and dom.tags["img"] == 0
    # The attacker's markup is on the page as readable text.
    assert SCRIPT_NAME in dom.all_text
    assert ATTR_NAME in dom.all_text


def test_browser_shows_findings_with_evidence(rendered: Rendered) -> None:
    dom = rendered.dom
    assert dom.classes["article.critical.finding"] == 1
    assert dom.classes["article.finding.high"] == 2
    assert dom.classes["article.finding.medium"] == 5
    text = dom.all_text
    for title in ("Blocked expected flow", "Missing expected flow", "Unlisted hostname"):
        assert title in text
    assert "db01's heartbeat to dsm01:4120 was rejected or never answered" in text
    assert "10.20.1.12:50201" in text and "rejected" in text and "unanswered" in text
    assert "2024-05-06 09:02:00" in text


def test_browser_shows_the_compliance_matrix(rendered: Rendered) -> None:
    cells = {
        k: v for k, v in rendered.dom.classes.items() if k.startswith("td.") and k.endswith(".st")
    }
    assert cells == {
        "td.observed.st": 6,
        "td.blocked.st": 2,
        "td.missing.st": 3,
        "td.inconclusive.st": 2,
        "td.not-visible.st": 2,
        "td.none.st": 20,
    }


def test_browser_shows_heartbeat_timeline_and_traffic_chart(rendered: Rendered) -> None:
    dom = rendered.dom
    fills = Counter(v for tag, name, v in dom.attrs if tag == "rect" and name == "fill")
    assert fills == {"#1a7f37": 6, "#b42318": 2, "#dc6803": 2}
    # app01 twice (4120 row with no attempts, 4118 from its expectation), db01's 4118 once.
    assert dom.all_text.count("no attempt seen in the capture") == 3
    assert dom.classes["rect.bar"] == 6
    assert "10.20.0.99:8443 tcp" in dom.all_text


def _png_rows(data: bytes, rows: int) -> tuple[int, int, int, list[bytes]]:
    """Width, height, bytes per pixel and the first ``rows`` unfiltered rows of an 8-bit PNG."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, header = 8, [], b""
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        pos += 12 + length
        if kind == b"IHDR":
            header = body
        elif kind == b"IDAT":
            idat.append(body)
    width, height, depth, colour = struct.unpack(">IIBB", header[:10])
    assert depth == 8 and colour in (2, 6)
    bpp = 3 if colour == 2 else 4
    raw = zlib.decompress(b"".join(idat))
    stride = width * bpp
    assert len(raw) == height * (stride + 1)
    out, prev = [], bytearray(stride)
    for r in range(rows):
        kind_byte = raw[r * (stride + 1)]
        line = bytearray(raw[r * (stride + 1) + 1 : (r + 1) * (stride + 1)])
        for i in range(stride):
            a = line[i - bpp] if i >= bpp else 0
            b, c = prev[i], (prev[i - bpp] if i >= bpp else 0)
            if kind_byte == 1:
                line[i] = (line[i] + a) & 255
            elif kind_byte == 2:
                line[i] = (line[i] + b) & 255
            elif kind_byte == 3:
                line[i] = (line[i] + (a + b) // 2) & 255
            elif kind_byte == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                pred = a if pa <= pb and pa <= pc else b if pb <= pc else c
                line[i] = (line[i] + pred) & 255
        out.append(bytes(line))
        prev = line
    return width, height, len(set(raw)), out


def test_screenshot_is_a_full_non_blank_page_under_a_red_banner(rendered: Rendered) -> None:
    png = rendered.png
    width, height, distinct, rows = _png_rows(png, 60)
    assert (width, height) == (1280, 2000)
    # A blank 1280x2000 page is ~12 kB with a handful of byte values once compressed.
    assert len(png) > 60_000 and distinct > 64
    bpp = len(rows[0]) // width
    pixel = tuple(rows[50][20 * bpp : 20 * bpp + 3])
    assert all(abs(p - q) <= 8 for p, q in zip(pixel, BANNER_RED, strict=True)), pixel
