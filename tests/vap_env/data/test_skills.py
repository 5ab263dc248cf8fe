"""The instruction -> skill table (RT-1 templates, synthetic templates, and what is not a skill)."""

from __future__ import annotations

import pytest

from vap_env.data import SKILLS, skill_from_instruction

CASES = [
    ("pick coke can", "pick"),
    ("pick blue chip bag", "pick"),
    ("Pick  RXBAR chocolate", "pick"),
    ("move blue chip bag near apple", "move_near"),
    ("move red block near green can", "move_near"),
    ("open top drawer", "open_drawer"),
    ("open middle drawer", "open_drawer"),
    ("close bottom drawer", "close_drawer"),
    ("place coke can into top drawer", "place_into_drawer"),
    ("put the sponge in the middle drawer", "place_into_drawer"),
    ("pick apple from top drawer and place on counter", "pick_from_drawer"),
    ("knock redbull can over", "knock_over"),
    ("place water bottle upright", "place_upright"),
    (b"pick green can", "pick"),
    ("wipe the table", "other"),
    ("", "other"),
    ("open the fridge", "other"),
]


@pytest.mark.parametrize(("instruction", "skill"), CASES)
def test_skill_table(instruction: str, skill: str) -> None:
    assert skill_from_instruction(instruction) == skill
    assert skill in SKILLS


def test_every_skill_is_reachable() -> None:
    assert {s for _, s in CASES} == set(SKILLS)


def test_non_text_is_rejected() -> None:
    with pytest.raises(TypeError, match="instruction must be a str"):
        skill_from_instruction(3)  # type: ignore[arg-type]
