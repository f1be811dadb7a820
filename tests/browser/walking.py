"""What the walk is made of: people on their own devices, tasks whose page loads are counted, a
scanner that types label payloads, a tolerant confirmation, and the blind as a blinded person reads it.

Page loads. A task counts every `load` event of the pages it uses: a full page shown after a link,
a form post and its redirect, a scan answered by a new page. Downloads (a label PDF) are not page
loads; they are counted apart. Signing in happens once per device, outside the tasks.
"""
from __future__ import annotations

import io
import os
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from cellbench import clock
from cellbench.demo import DEMO_PASSWORD

TABLET = {"width": 768, "height": 1024}  # the bench and the site
DESK = {"width": 1280, "height": 800}  # supply, QA and QP

# Kit numbers are random letters of the kit alphabet ("XXXX-XXXX-C") and may spell ASC or ARM:
# they are masked before arm words are looked for.
KIT_NUMBER = re.compile(r"\b[0-9A-Z]{4}-[0-9A-Z]{4}-[0-9A-Z]\b")
ARM_WORDS = re.compile(r"\b(ASC|PLB)-\d{4}-\d{4}|\b(asc|placebo|active|saline|nacl|verum|arm)\b", re.IGNORECASE)


@dataclass
class Task:
    name: str
    target: str = "—"
    loads: int = 0
    downloads: int = 0
    signatures: int = 0
    seconds: float = 0.0


@dataclass
class Person:
    """A person at their own device: a browser context of their own (cookies, session)."""

    username: str
    page: object  # playwright Page
    walk: Walk
    blinded: bool = False  # every page they reach is read for arm words (Walk.shared_phrases aside)

    def go(self, path: str) -> None:
        """Open a page by its address, as a bookmark or a typed URL would (counted as a load)."""
        self.page.goto(self.walk.url + path)
        self._arrived()

    def click(self, selector: str) -> None:
        """Follow a link or press a button that leads to a new page, and wait for it."""
        self._press(self.page.locator(selector).first)

    def follow(self, locator) -> None:
        """The same for a link or button found otherwise (inside a table row)."""
        self._press(locator)

    def home(self) -> None:
        self.go("/")

    def from_queue(self, words: str) -> None:
        """Go home and open the work-queue item that reads `words`, a pattern (its count aside, and
        either number or wording: "shipments? in transit"; the queues' words are still changing)."""
        self.home()
        self.open_queue_item(words)

    def open_queue_item(self, words: str) -> None:
        """On the home page already: open the work-queue item that reads `words` (as from_queue)."""
        item = self.page.locator(".queue-item", has_text=re.compile(words))
        queue = self.page.locator(".queue-item").all_inner_texts()
        assert item.count(), f"{self.username}'s work queue shows {words!r}; it shows {queue}"
        self._press(item.first.locator("a").first)

    def at(self, path: str) -> bool:
        """Whether the page shown is `path` (a queue may open the exact item instead of a list)."""
        return self.page.url.split("#")[0].split("?")[0].endswith(path)

    def nav(self, name: str) -> None:
        """Follow a link of the top bar (or, if the tablet's bar has folded it away, open its address)."""
        link = self.page.locator("nav.main").get_by_role("link", name=name, exact=True)
        if link.is_visible():
            self._press(link)
        else:
            self.go(link.get_attribute("href"))

    def notice(self) -> str:
        found = self.page.locator(".notice")
        return found.inner_text() if found.count() else ""

    def error(self) -> str:
        found = self.page.locator(".error")
        return " ".join(found.all_inner_texts())

    def main(self) -> str:
        return self.page.inner_text("main") if self.page.locator("main").count() else self.page.inner_text("body")

    def shot(self, name: str, *, full_page: bool = True) -> None:
        """A screenshot of the whole page (or of what the screen shows) into $CELLBENCH_WALK_SCREENSHOTS,
        when it names a folder."""
        if folder := os.environ.get("CELLBENCH_WALK_SCREENSHOTS"):
            Path(folder).mkdir(parents=True, exist_ok=True)
            self.page.screenshot(path=str(Path(folder) / f"{len(self.walk.tasks):02d}-{name}.png"),
                                 full_page=full_page)

    def scan(self, payload: str) -> None:
        """A USB scanner is a keyboard: it types the label's payload into the focused field and
        presses Enter. The page must have put the focus in its scan field."""
        focused = self.page.evaluate("document.activeElement && document.activeElement.name")
        assert focused == "code", f"the scan field has the focus on {self.page.url} (found {focused!r})"
        self.page.keyboard.type(payload)
        with self.page.expect_navigation():
            self.page.keyboard.press("Enter")
        self._arrived()

    def sign(self, form: str, password: str = DEMO_PASSWORD) -> None:
        """Re-enter the password in a signing form and press its button (one signature)."""
        self.page.fill(f"{form} input[name=password]", password)
        self._press(self.page.locator(f"{form} button[type=submit], {form} button:not([type])").first)
        self.walk.signed()

    def _press(self, target) -> None:
        press(self.page, target)
        self._arrived()

    def _arrived(self) -> None:
        """A blinded person reads no arm word, ASC or saline lot number on any page they reach."""
        if self.blinded:
            found = arm_words(self.main(), *self.walk.shared_phrases)
            assert not found, f"{self.username} (blinded) reads {found} on {self.page.url}"


@dataclass
class Walk:
    browser: object  # playwright Browser
    url: str
    folder: Path
    tasks: list[Task] = field(default_factory=list)
    people: dict[str, Person] = field(default_factory=dict)
    shared_phrases: tuple[str, ...] = ()  # shown alike for both arms (study titles naming the product)
    _current: Task | None = None

    def person(self, username: str, viewport: dict[str, int], *, blinded: bool = False,
               password: str = DEMO_PASSWORD) -> Person:
        """`username` at their device (the same one all walk long), signed in. A blinded person's
        pages are read for arm words each time one loads."""
        if username in self.people:
            return self.people[username]
        # The devices are at the Danish sites, their clocks in the site's zone (a "Now" button reads it).
        context = self.browser.new_context(viewport=viewport, accept_downloads=True, timezone_id=clock.DEFAULT_ZONE)
        page = context.new_page()
        page.on("load", lambda _page: self._loaded())
        page.on("dialog", lambda dialog: dialog.accept())  # a window.confirm(), if a page uses one
        page.set_default_timeout(15_000)
        someone = Person(username, page, self, blinded)
        self.people[username] = someone
        page.goto(f"{self.url}/login")
        page.fill("input[name=username]", username)
        page.fill("input[name=password]", password)
        someone._press(page.locator("button[type=submit]"))
        assert "/login" not in page.url, f"{username} could not sign in: {someone.error()}"
        return someone

    @contextmanager
    def task(self, name: str, *, loads_at_most: int | None = None,
             signatures_at_most: int | None = None) -> Iterator[Task]:
        """Count the page loads (and signatures) of one task of the walk; with a target, the task
        fails when it takes more (issue 14: a batch step in at most 2 page loads, 20 QC results in
        at most 3, their review with 1 signature)."""
        assert self._current is None, f"task {name!r} started inside {self._current and self._current.name!r}"
        targets = [f"≤ {loads_at_most} loads"] if loads_at_most is not None else []
        targets += [f"≤ {signatures_at_most} signature{'s' if signatures_at_most != 1 else ''}"] \
            if signatures_at_most is not None else []
        task = self._current = Task(name, ", ".join(targets) or "—")
        started = time.perf_counter()
        try:
            yield task
        finally:
            task.seconds = time.perf_counter() - started
            self.tasks.append(task)
            self._current = None
        assert loads_at_most is None or task.loads <= loads_at_most, \
            f"{name}: {task.loads} page loads, the target is at most {loads_at_most}"
        assert signatures_at_most is None or task.signatures <= signatures_at_most, \
            f"{name}: {task.signatures} signatures, the target is at most {signatures_at_most}"

    def _loaded(self) -> None:
        if self._current is not None:
            self._current.loads += 1

    def loaded_in_place(self) -> None:
        """A page the person waited for that came without a browser navigation: a form sent by the
        page's script whose answer replaced the page (the lot page's step form, templates/static/step.js)."""
        self._loaded()

    def signed(self) -> None:
        if self._current is not None:
            self._current.signatures += 1

    def download(self, someone: Person, selector: str) -> bytes:
        """Click a download link; the file's bytes (not a page load)."""
        with someone.page.expect_download() as started:
            someone.page.click(selector)
        path = self.folder / started.value.suggested_filename
        started.value.save_as(path)
        if self._current is not None:
            self._current.downloads += 1
        return path.read_bytes()

    def table(self) -> str:
        """Task — page loads — target, as printed at the end of the walk."""
        rows = [("task", "page loads", "target", "signatures", "downloads", "seconds")]
        rows += [(t.name, str(t.loads), t.target, str(t.signatures) if t.signatures else "",
                  str(t.downloads) if t.downloads else "", f"{t.seconds:.1f}") for t in self.tasks]
        rows.append(("total", str(sum(t.loads for t in self.tasks)), "", str(sum(t.signatures for t in self.tasks)),
                     "", f"{sum(t.seconds for t in self.tasks):.1f}"))
        widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
        lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
                 for row in rows]
        lines.insert(1, "  ".join("-" * width for width in widths))
        return "Page loads per task of the walk\n" + "\n".join(lines)


# --- pressing buttons, with or without a confirmation -----------------------------------------------


def press(page, target) -> None:
    """Press a button (or follow a link) that leads to a new page and wait for it. If the button or
    its form carries data-confirm (templates/static/confirm.js shows a <dialog> with the summary),
    the person reads the summary and confirms; without confirm.js the form simply submits."""
    asks = target.evaluate("e => { const f = e.form || e.closest('form'); "
                           "return e.hasAttribute('data-confirm') || !!(f && f.hasAttribute('data-confirm')); }")
    with page.expect_navigation():
        target.click()
        if asks:
            confirm(page)


def confirm(page) -> None:
    """Confirm the open confirmation dialog, if one opened: its irreversible choice, not "Go back"."""
    dialog = page.locator("dialog[open]")
    try:
        dialog.wait_for(state="visible", timeout=3_000)
    except Exception:  # no dialog (confirm.js not loaded): the form was submitted at once
        return
    assert dialog.inner_text().strip(), "the confirmation shows a summary of what will be done"
    go = dialog.locator(".confirm-go")
    if not go.count():
        go = dialog.locator("button").filter(has_not_text=re.compile(r"cancel|back|keep|don.t", re.IGNORECASE))
    go.last.click()


# --- labels and the blind ---------------------------------------------------------------------------


def qr_payloads(pdf: bytes) -> dict[str, str]:
    """kit number -> the payload a scanner reads off its label, decoded from the label PDF's QR images."""
    import pypdf
    import zxingcpp

    found: dict[str, str] = {}
    for page in pypdf.PdfReader(io.BytesIO(pdf)).pages:
        for image in page.images:
            # the QR is embedded at one pixel per module: enlarged, as a scanner's optics would see it
            big = image.image.resize((image.image.width * 6, image.image.height * 6))
            for code in zxingcpp.read_barcodes(big, formats=zxingcpp.BarcodeFormat.QRCode):
                found[code.text.split(":")[1]] = code.text
    return found


def blinded_text(text: str, *shared: str) -> str:
    """A blinded page's text with kit numbers and the given phrases (shown alike for both arms, such
    as a study title naming its product) masked, so that what is left may be searched for arm words."""
    for phrase in shared:
        text = text.replace(phrase, "<shared>")
    return KIT_NUMBER.sub("<kit>", text)


def arm_words(text: str, *shared: str) -> list[str]:
    """Arm words (or ASC/placebo lot numbers) on a blinded page, beyond kit numbers and shared phrases."""
    return [m.group(0) for m in ARM_WORDS.finditer(blinded_text(text, *shared))]
