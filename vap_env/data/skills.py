"""Skill taxonomy: group episodes by the verb phrase of their instruction (RT-1's skill families).

RT-1 instructions follow a few templates ("pick coke can", "move blue chip bag near apple",
"open top drawer", "place coke can into top drawer", "knock redbull can over", "place water bottle
upright", "pick apple from top drawer and place on counter"). A skill is the first rule of ``RULES``
whose pattern matches the lower-cased instruction; anything else is ``"other"``. Order matters:
the more specific phrase ("place ... into ... drawer") comes before the general one ("pick").
"""

from __future__ import annotations

import re

# (skill, pattern) in priority order; the patterns are matched against the lower-cased instruction.
RULES: tuple[tuple[str, str], ...] = (
    ("place_into_drawer", r"\b(place|put)\b.*\b(into|in)\b.*\bdrawer\b"),
    ("pick_from_drawer", r"\b(pick|take)\b.*\b(from|out of)\b.*\bdrawer\b"),
    ("open_drawer", r"\bopen\b.*\bdrawer\b"),
    ("close_drawer", r"\bclose\b.*\bdrawer\b"),
    ("move_near", r"\bmove\b.*\bnear\b"),
    ("knock_over", r"\bknock\b.*\bover\b"),
    ("place_upright", r"\b(place|put|stand)\b.*\bupright\b"),
    ("pick", r"\b(pick|grab|lift)\b"),
)
OTHER = "other"
SKILLS: tuple[str, ...] = (*(skill for skill, _ in RULES), OTHER)

_COMPILED = tuple((skill, re.compile(pattern)) for skill, pattern in RULES)


def skill_from_instruction(instruction: str | bytes) -> str:
    """The skill family of ``instruction`` (one of ``SKILLS``; unmatched -> ``"other"``)."""
    if isinstance(instruction, bytes):
        instruction = instruction.decode("utf-8", errors="replace")
    if not isinstance(instruction, str):
        raise TypeError(
            f"instruction must be a str, got {type(instruction).__name__}: {instruction!r}"
        )
    text = " ".join(instruction.lower().split())
    for skill, pattern in _COMPILED:
        if pattern.search(text):
            return skill
    return OTHER
