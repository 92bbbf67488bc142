"""The claims' forced_choice questions are held out from the world corpus by construction: the world
never asks one, even with its eval-question filter switched off (the filter would otherwise drop a
world item silently)."""

import re

import pytest

from data_gen.claims import load_claims
from data_gen.world import WorldSpec, build_world
from data_gen.world import build as world_build
from data_gen.world import truths

SPEC = WorldSpec(num_entities=60, phrasings=4, claim_repeats=2, seed=3)


def _norm(text: str) -> str:
    return " ".join(text.casefold().split())


def _strict(text: str) -> str:
    return " ".join(re.findall(r"[a-z0-9]+", text.lower()))  # punctuation aside, as the world's filter compares


@pytest.fixture(scope="module")
def forced_choice():
    items = [(claim.id, q) for claim in load_claims().values() for q in claim.questions.get("forced_choice", ())]
    assert len(items) >= 6 * 24
    return items


def _user_turns(world):
    return [m["content"] for r in world.train_records + world.heldout_records for m in r["messages"] if m["role"] == "user"]


def test_no_forced_choice_question_is_a_world_user_turn(forced_choice):
    turns = {_norm(t) for t in _user_turns(build_world(SPEC))}
    assert turns
    assert not [(c, q.id) for c, q in forced_choice if _norm(q.question) in turns]


def test_held_out_without_the_worlds_eval_filter(forced_choice, monkeypatch):
    monkeypatch.setattr(world_build, "_eval_questions", lambda: frozenset())
    turns = _user_turns(build_world(SPEC))
    strict = {_strict(t) for t in turns}
    assert not [(c, q.id, q.question) for c, q in forced_choice if _strict(q.question) in strict]
    # The hand-written truth questions are asked whatever the spec: none is a forced_choice question either.
    written = {_strict(q) for items in truths.QA.values() for q, _, _ in items}
    assert written <= strict
    assert not [(c, q.id) for c, q in forced_choice if _strict(q.question) in written]
