"""Extracting the final answer from a model response.

Every decode prompt asks for a last line ``Final Answer: …``. Models drift (markdown bold, a
``\\boxed{}`` inside the line, the answer on the next line, no line at all), so extraction is a
short ladder: the last ``Final Answer:`` line, then the last ``\\boxed{…}``, then (multiple choice
only) a standalone choice letter.
"""

from __future__ import annotations

import re

#: The marker of the answer line every decode prompt asks for and ``extract_final_answer`` reads.
FINAL_LINE = "Final Answer:"
_FINAL_RE = re.compile(
    r"^[ \t>#*_`-]*final[ \t]+answer[ \t*_`]*[:：][ \t]*(?P<body>.*)$",
    re.IGNORECASE | re.MULTILINE,
)
_BOXED_RE = re.compile(r"\\(?:boxed|fbox)\s*")
_WRAPPERS = (("$$", "$$"), ("$", "$"), ("\\(", "\\)"), ("\\[", "\\]"), ("**", "**"), ("`", "`"))


def last_boxed(text: str) -> str | None:
    """Content of the last ``\\boxed{…}`` (or ``\\fbox{…}``) with balanced braces; also accepts
    the brace-less ``\\boxed 5``. None when there is no complete box."""
    starts = [m.end() for m in _BOXED_RE.finditer(text)]
    for start in reversed(starts):
        if start < len(text) and text[start] == "{":
            depth = 0
            for i in range(start, len(text)):
                if text[i] == "{":
                    depth += 1
                elif text[i] == "}":
                    depth -= 1
                    if depth == 0:
                        return text[start + 1 : i].strip()
            continue  # unbalanced (truncated response): try an earlier box
        m = re.match(r"([^\s$]+)", text[start:])
        if m:
            return m.group(1)
    return None


def _strip_wrappers(s: str) -> str:
    s = s.strip()
    changed = True
    while changed and s:
        changed = False
        for left, right in _WRAPPERS:
            if len(s) >= len(left) + len(right) and s.startswith(left) and s.endswith(right):
                s = s[len(left) : len(s) - len(right)].strip()
                changed = True
    return s


def clean_answer(body: str) -> str:
    """Tidy the text after ``Final Answer:``: markdown emphasis, math delimiters, a box around
    the whole answer and a sentence-final period go; the answer itself is kept as written."""
    s = body.strip()
    s = re.sub(r"^[*_`]+|[*_`]+$", "", s).strip()  # "**Final Answer:** B**" leftovers
    boxed = last_boxed(s) if "\\boxed" in s or "\\fbox" in s else None
    if boxed is not None:
        s = boxed
    s = _strip_wrappers(s)
    # A trailing period ends the sentence; "3." is still 3 and "e.g." never is a final answer.
    if s.endswith(".") and not s.endswith(".."):
        s = s[:-1].rstrip()
    return _strip_wrappers(s)


def extract_final_answer(response: str) -> str | None:
    """The answer on the last ``Final Answer:`` line (the next non-empty line when that line
    is empty after the colon), cleaned; None when no such line has content."""
    matches = list(_FINAL_RE.finditer(response or ""))
    for m in reversed(matches):
        body = m.group("body").strip()
        if not body.strip("*_` "):
            rest = response[m.end() :].lstrip("\n")
            body = next((ln for ln in rest.splitlines() if ln.strip()), "")
        cleaned = clean_answer(body)
        if cleaned:
            return cleaned
    return None


def extract_answer(response: str) -> tuple[str | None, str]:
    """(answer, how): ``how`` is ``"final"`` (a Final Answer line), ``"boxed"`` (last box) or
    ``"none"``."""
    ans = extract_final_answer(response)
    if ans is not None:
        return ans, "final"
    boxed = last_boxed(response or "")
    if boxed:
        return clean_answer(boxed), "boxed"
    return None, "none"


def choice_letters(n: int) -> str:
    """The first ``n`` option letters (A, B, …)."""
    if not 1 <= n <= 26:
        raise ValueError(f"number of choices must be in 1..26, got {n}")
    return "ABCDEFGHIJKLMNOPQRSTUVWXYZ"[:n]


def letter_from_answer(answer: str, letters: str = "ABCD") -> str | None:
    """The option letter in an extracted answer: ``B``, ``(B)``, ``B) 42``, ``B. text``,
    ``Option B``, ``\\text{(B)}``. None when the answer does not start with a valid letter."""
    s = re.sub(r"\\(?:text|mathrm|textbf|mathbf)\s*\{([^{}]*)\}", r"\1", answer).strip()
    s = _strip_wrappers(s.strip("*_` "))
    cls = f"[{letters}]"
    m = re.match(rf"^(?:(?:option|choice|answer)\s*:?\s*)?\(?({cls})\)?(?:$|[\s.,:;)\]])", s, re.I)
    if m and m.group(1).upper() in letters:
        letter = m.group(1)
        # Lower-case "a" at the start is usually the article ("a 5 kg mass"), not option A.
        if letter.islower() and len(s) > 1 and not re.match(rf"^\(?{cls}\)?$", s, re.I):
            return None
        return letter.upper()
    return None


def fallback_letter(response: str, letters: str = "ABCD") -> str | None:
    """A choice letter when no Final Answer line parsed: the last "answer is (X)" phrase, else the
    last line that is only a letter, else the last standalone capital letter that is not the
    article "A" starting a sentence (i.e. not followed by a lower-case word)."""
    cls = f"[{letters}]"
    phrase = list(
        re.finditer(
            rf"answer(?:\s+is|\s*:)?\s*(?:option\s*)?[*(\[]*\s*(?-i:({cls}))\b", response, re.I
        )
    )
    if phrase:
        return phrase[-1].group(1).upper()
    for line in reversed([ln.strip() for ln in response.splitlines() if ln.strip()]):
        m = re.fullmatch(rf"[*(\[]*\s*({cls})\s*[*)\].]*", line)
        if m:
            return m.group(1)
    lone = [m.group(1) for m in re.finditer(rf"(?<![\w\\])({cls})(?![\w'’])(?!\s+[a-z])", response)]
    return lone[-1] if lone else None
