"""'Did you mean' for a misspelt name."""

from __future__ import annotations

import re
from typing import Iterable

_WORD_BREAK = re.compile(r"[_\-\s.]+")


def _words(name: str) -> list[str]:
    return [word for word in _WORD_BREAK.split(name.lower()) if word]


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """' (did you mean 'x'?)' when a close choice exists, else ''.

    Close means: the same words in another order ('depth_estimate' -> 'estimate_depth'), a few letters off
    ('txt2imag' -> 'txt2img'), a shortened name ('save' -> 'save_image'), or the words reordered and a few
    letters off ('depth_estimat' -> 'estimate_depth')."""
    word = str(word)
    choices = [str(c) for c in choices]
    words = sorted(_words(word))
    if len(words) > 1:  # the same words in another order beats any spelling match
        reordered = [c for c in choices if c != word and sorted(_words(c)) == words]
        if len(reordered) == 1:
            return f" (did you mean '{reordered[0]}'?)"
    close = _closest(word, choices)
    if not close and len(word) >= 3:  # a shortened name: 'save' -> 'save_image'
        close = [c for c in choices if c.startswith(word)][:2]
        close = close if len(close) == 1 else []
    return f" (did you mean '{close[0]}'?)" if close else ""


def _closest(word: str, choices: list[str]) -> list[str]:
    """The choice most like `word`, by its letters or by its words in any order (difflib ratio >= 0.6)."""
    words = " ".join(sorted(_words(word)))
    scored = []
    for choice in choices:
        score = _ratio(word, choice)
        if len(_words(choice)) > 1 or " " in words:
            score = max(score, _ratio(words, " ".join(sorted(_words(choice)))))
        if score >= 0.6:
            scored.append((score, choice))
    return [max(scored)[1]] if scored else []  # ties as difflib.get_close_matches breaks them


def _ratio(a: str, b: str) -> float:
    import difflib  # only when a name is misspelt: not on the way of a valid workflow (its start, issue 28)

    matcher = difflib.SequenceMatcher(None, b, a)  # as difflib.get_close_matches compares them
    if matcher.real_quick_ratio() < 0.6 or matcher.quick_ratio() < 0.6:
        return 0.0
    return matcher.ratio()
