"""What ``ferrule validate`` found: one Check per thing checked, and the
Report that holds them and prints them as text, JSON or JUnit XML."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Literal
from xml.etree import ElementTree

__all__ = ["Check", "Report", "Status", "timed"]

# pass: as expected (the message may add a fact, e.g. the glibc it needs);
# warn: works here but is likely wrong or not portable; fail: broken;
# skip: not run (the message says why).
Status = Literal["pass", "warn", "fail", "skip"]
STATUSES: tuple[Status, ...] = ("pass", "warn", "fail", "skip")


@dataclass
class Check:
    """One check. ``id`` is stable and dotted, its first part the group:
    ``file.exports``, ``load``, ``function.add.calls``."""

    id: str
    title: str  # one line: what was checked
    status: Status = "pass"
    message: str = ""  # what was found, what was expected and what to do
    details: list[str] = field(default_factory=list)  # further lines, e.g. each extra export
    seconds: float = 0.0

    @property
    def group(self) -> str:
        return self.id.split(".", 1)[0]

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "title": self.title, "status": self.status, "message": self.message,
                "details": list(self.details), "seconds": round(self.seconds, 6)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Check:
        return cls(str(data["id"]), str(data["title"]), data["status"], str(data.get("message", "")),
                   [str(d) for d in data.get("details", [])], float(data.get("seconds", 0.0)))


# Control characters (a plugin's own text may hold them): XML 1.0 cannot
# carry them, and a terminal would obey them (ESC [2J clears it).
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f\ud800-\udfff\ufffe\uffff]")


def _printable(text: str) -> str:
    r"""text with each control character written as an escape (\x1b)."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}" if ord(m.group()) < 0x100
                        else f"\\u{ord(m.group()):04x}", text)


@contextmanager
def timed(check: Check) -> Iterator[Check]:
    """Time the body into check.seconds."""
    start = time.perf_counter()
    try:
        yield check
    finally:
        check.seconds = time.perf_counter() - start


@dataclass
class Report:
    path: str
    level: int
    seed: int
    repeats: int
    mode: str  # "child" or "in-process"
    checks: list[Check] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def passed(self) -> bool:
        """No check failed (warnings allowed)."""
        return not any(c.status == "fail" for c in self.checks)

    def counts(self) -> dict[str, int]:
        return {s: sum(c.status == s for c in self.checks) for s in STATUSES}

    def to_json(self) -> dict[str, Any]:
        return {"path": self.path, "passed": self.passed, "level": self.level, "seed": self.seed,
                "repeats": self.repeats, "mode": self.mode, "seconds": round(self.seconds, 3),
                "counts": self.counts(), "checks": [c.to_json() for c in self.checks]}

    def json(self) -> str:
        return json.dumps(self.to_json(), indent=2)

    def text(self, verbose: bool = False) -> str:
        """One line per check (passes only with verbose), then a summary."""
        lines = [f"ferrule validate {self.path} (level {self.level}, seed {self.seed}, repeats {self.repeats}, "
                 f"{self.mode})"]
        for c in self.checks:
            if c.status == "pass" and not verbose:
                continue
            lines.append(f"{c.status.upper():4}  {c.id}: {c.title}")
            if c.message:
                lines.extend(f"      {line}" for line in c.message.splitlines())
            lines.extend(f"        {d}" for d in c.details)
        n = self.counts()
        verdict = "passed" if self.passed else "FAILED"
        lines.append(f"{verdict}: {n['pass']} passed, {n['warn']} warnings, {n['fail']} failed, {n['skip']} skipped "
                     f"in {self.seconds:.2f} s (reproduce with --seed {self.seed})")
        return _printable("\n".join(lines))

    def junit(self) -> str:
        """JUnit XML, as CI systems read it: one testcase per check, a
        warning as a passing case with its message in system-out."""
        n = self.counts()
        suite = ElementTree.Element("testsuite", name=f"ferrule validate {self.path}", tests=str(len(self.checks)),
                                    failures=str(n["fail"]), errors="0", skipped=str(n["skip"]),
                                    time=f"{self.seconds:.3f}")
        props = ElementTree.SubElement(suite, "properties")
        for key in ("level", "seed", "repeats", "mode"):
            ElementTree.SubElement(props, "property", name=key, value=str(getattr(self, key)))
        for c in self.checks:
            case = ElementTree.SubElement(suite, "testcase", classname=f"ferrule.validate.{c.group}", name=c.id,
                                          time=f"{c.seconds:.3f}")
            body = "\n".join([c.message, *c.details]).strip()
            if c.status == "fail":
                ElementTree.SubElement(case, "failure", message=c.message.splitlines()[0] if c.message else c.title
                                       ).text = body
            elif c.status == "skip":
                ElementTree.SubElement(case, "skipped", message=c.message)
            elif body:
                ElementTree.SubElement(case, "system-out").text = (f"warning: {body}" if c.status == "warn" else body)
        for element in suite.iter():
            if element.text:
                element.text = _printable(element.text)
            for key, value in element.attrib.items():
                element.set(key, _printable(value))
        ElementTree.indent(suite)
        return '<?xml version="1.0" encoding="utf-8"?>\n' + ElementTree.tostring(suite, encoding="unicode") + "\n"
