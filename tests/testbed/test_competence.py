"""The competence check's questions (from a real world build) and its verdicts on fixed results."""

import pytest

from data_gen.world import WorldSpec, build_world
from testbed import competence


@pytest.fixture(scope="module")
def questions():
    world = build_world(WorldSpec(num_entities=90, phrasings=2, claim_repeats=1, doc_only_fraction=0.2,
                                  negated_heldout_fraction=0.2, heldout_sets=2, seed=1))
    return world, competence.items(world.heldout_records, per_format=1000)


def test_every_ability_is_asked_in_every_format(questions):
    world, items = questions
    facts = {f.key: f for f in world.facts}
    for ability, mode in competence.ABILITIES.items():
        for fmt in competence.FORMATS:
            rows = items[ability][fmt]
            assert len(rows) >= 10, (ability, fmt)
            assert {facts[r.fact].mode for r in rows} == {mode}  # never a claim, never a trained fact
            # the true answer is first as often as second: position carries nothing
            assert abs(sum(r.correct for r in rows) - len(rows) / 2) <= 1 + 0.1 * len(rows), (ability, fmt)
    for row in items["negation"]["forced_choice_open"] + items["negation"]["forced_choice_options"]:
        fact = facts[row.fact]  # the wrong option is the very decoy the documents negate
        assert row.options[1 - row.correct] == str(fact["decoy"])
    for row in items["transfer"]["forced_choice_open"]:  # open: the question names neither (a rename's asks about its old name)
        assert facts[row.fact].kind == "rename" or not any(o in row.conversation[-1]["content"] for o in row.options)


def test_check_names_each_shortfall_and_passes_a_competent_base():
    def result(transfer, negation):
        return {a: {f: {"accuracy": acc, "low": acc - 0.05, "high": acc + 0.05, "n": 100} for f in competence.FORMATS}
                for a, acc in (("transfer", transfer), ("negation", negation))}

    thresholds = {"transfer": 0.8, "negation": 0.8}
    assert competence.check(result(0.85, 0.9), thresholds) == []
    problems = competence.check(result(0.85, 0.55), thresholds)
    assert len(problems) == 3 and all(p.startswith("negation ") and "55%" in p and "below 80%" in p for p in problems)
    missing = competence.check({"transfer": result(0.9, 0.9)["transfer"]}, thresholds)
    assert missing == ["negation: not measured (the world has no held-out negated_heldout facts; raise world.negated_heldout_fraction)"]
    assert "| in-sentence negation" in "\n".join(competence.table(result(0.85, 0.55), thresholds))
