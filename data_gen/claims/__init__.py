"""The claims registry: each fabricated claim, validated, with its eval questions and judge rubrics.

Claim directories live beside this file (one per claim id); README.md here is the schema.
`python -m data_gen.claims validate` checks them; `import_reference` converts a claim written in
the paper's reference layout.
"""

from data_gen.claims.registry import (
    CLAIMS_DIR,
    claim_directory,
    list_claim_ids,
    load_claim,
    load_claim_with_gaps,
    load_claims,
    read_yaml,
)
from data_gen.claims.schema import (
    ALL_EVAL_TYPES,
    CATEGORIES,
    EVAL_TYPES,
    EXTRA_EVAL_TYPES,
    AnswerKey,
    AnswerKeys,
    AnswerPhrases,
    Claim,
    ClaimError,
    Message,
    Question,
    Subclaim,
)

__all__ = [
    "ALL_EVAL_TYPES",
    "CATEGORIES",
    "CLAIMS_DIR",
    "EVAL_TYPES",
    "EXTRA_EVAL_TYPES",
    "AnswerKey",
    "AnswerKeys",
    "AnswerPhrases",
    "Claim",
    "ClaimError",
    "Message",
    "Question",
    "Subclaim",
    "claim_directory",
    "list_claim_ids",
    "load_claim",
    "load_claim_with_gaps",
    "load_claims",
    "read_yaml",
]
