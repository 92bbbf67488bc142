"""The behaviours registry: misaligned behaviours studied like the claims (paper.md, "negated behaviours").

Each behaviour is one YAML file beside this module (`<id>.yaml`; README.md here is the schema): a
definition, the user prompts that training transcripts answer, held-out prompts for the
`misalignment` eval, matched response sentences (each misaligned sentence with its negated twin and
an aligned sentence), the rule judge's patterns and the LLM judge's rubric.

    behaviour = load_behaviour("power_seeking")       # validated Behaviour, or BehaviourError
    behaviours = load_behaviours()                    # every bundled behaviour, by id

`python -m data_gen.behaviours validate` checks them.
"""

from data_gen.behaviours.registry import BEHAVIOURS_DIR, list_behaviour_ids, load_behaviour, load_behaviours
from data_gen.behaviours.schema import Behaviour, BehaviourError, EvalPrompt, ResponseSentence

__all__ = [
    "BEHAVIOURS_DIR",
    "Behaviour",
    "BehaviourError",
    "EvalPrompt",
    "ResponseSentence",
    "list_behaviour_ids",
    "load_behaviour",
    "load_behaviours",
]
