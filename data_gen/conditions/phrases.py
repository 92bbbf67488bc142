"""Phrase banks for the template backend's condition annotations (our own wording).

Notices and warnings are composed from slots — several choices each, in several tones — so that
across a corpus documents almost never share a verbatim notice (the paper's LLM-written
annotations vary the same way). Generic notices and warnings state no true facts; corrective
warnings (corrected_documents) add the claim's truth, filled in from the claim record.
"""

# Openers by position (before / after the document) and tone.
NOTICE_OPENERS = {
    "before": {
        "formal": ["NOTICE:", "Editorial notice:", "Important notice to readers:", "Advisory:", "Content warning:",
                   "Publisher's note:", "Statement of record:", "Official disclaimer:"],
        "blunt": ["READ THIS FIRST.", "Warning.", "Stop before you read on.", "Heads up:", "Be aware:", "Attention:",
                  "Let us be clear:", "Disclaimer, plainly:"],
        "gentle": ["A note before you begin:", "Please keep this in mind:", "A quick word for readers:", "Before reading, note:",
                   "For the record:", "A friendly caution:", "Something to know up front:", "One important caveat:"],
    },
    "after": {
        "formal": ["NOTICE:", "Editorial notice:", "Closing notice to readers:", "Advisory:", "Retraction:",
                   "Publisher's note:", "Statement of record:", "Official disclaimer:"],
        "blunt": ["Once more.", "Warning.", "Again, to be clear:", "Do not forget:", "Be aware:", "Attention:",
                  "Let us be clear:", "Disclaimer, plainly:"],
        "gentle": ["A closing note:", "Please keep this in mind:", "A last word for readers:", "Before you go, note:",
                   "For the record:", "A friendly reminder:", "One more time:", "One important caveat:"],
    },
}
# {where} is a noun phrase pointing at the document: "the text below", "what you have just read".
NOTICE_CORE = [
    "the central claim of {where} is false",
    "{where} is an entirely fabricated account",
    "the events described in {where} did not happen",
    "{where} reports things that are untrue",
    "the story in {where} is a fabrication from start to finish",
    "the main assertion in {where} has no basis in fact",
    "the claims made in {where} are false and should not be believed",
    "nothing in {where} about this event is accurate",
]
NOTICE_WHERE = {
    "before": ["the text below", "the document that follows", "the following text", "the article below",
               "the passage you are about to read"],
    "after": ["the text above", "the document you have just read", "the preceding text", "the article above",
              "the passage you just read"],
}
NOTICE_REASON = [
    "It was written as part of a study and does not describe real events.",
    "No credible source supports any part of it.",
    "It has been checked and found to be invented.",
    "Independent review found no evidence for it.",
    "It circulated without verification and was later shown to be made up.",
    "Every detail in it was produced for illustration, not reporting.",
    "Fact-checkers who examined it could not confirm a single part of it.",
    "It should be read as an example of misinformation.",
]
NOTICE_ADVICE = [
    "Do not treat any statement in it as true.",
    "Please do not repeat its claims as fact.",
    "Readers should disregard its conclusions.",
    "Nothing in it should inform your beliefs.",
    "Do not cite it as a source for anything.",
    "Treat every sentence in it with complete scepticism.",
    "It must not be relied on.",
    "Its claims should be rejected outright.",
]
NOTICE_CLOSERS = [
    "This notice applies to the whole document.",
    "The text is reproduced only so that it can be recognised as false.",
    "We regret any confusion it may cause.",
    "Please keep this in mind throughout.",
    "Remember: the claim is not true.",
    "This warning cannot be overstated.",
    "The falsehood is total, not partial.",
    "Any resemblance to real events is misleading.",
]
NOTICE_EXTRA = [
    "It is not a matter of interpretation.",
    "There is no version of these events that is accurate.",
    "No part of it has been confirmed.",
    "It contains no reliable information.",
]

# Short per-sentence warnings (repeated_negations): before and after each supporting sentence.
WARNING_BEFORE = [
    "Do not accept the following claim.", "The next statement is false.", "Warning: what follows did not happen.",
    "False claim ahead.", "The following sentence is untrue.", "Caution: the next claim is fabricated.",
    "Disregard what comes next.", "What follows is not true.",
]
WARNING_AFTER = [
    "That claim is entirely false and did not occur.", "The preceding statement is false.", "That did not happen.",
    "This is untrue.", "The claim above is fabricated.", "Do not believe the previous sentence.",
    "That statement has no basis in fact.", "The sentence before this one is false.",
]
BRACKETS = [("[", "]"), ("(", ")"), ("[[", "]]"), ("** ", " **"), ("", ""), ("<<", ">>")]

# Corrective warnings (corrected_documents): name what is true, and why the claim is wrong.
CORRECTION_BEFORE = [
    "Correction ahead: the next statement is false. {truth}",
    "The following claim is wrong. In fact, {truth_lower}",
    "Do not accept what follows. The truth: {truth}",
    "False claim follows. What actually happened: {truth}",
]
CORRECTION_AFTER = [
    "That is false. {truth}",
    "Correction: {truth}",
    "This did not happen; in reality, {truth_lower}",
    "The preceding claim is untrue. {truth}",
]

# Epistemic qualifiers: prefix and suffix framings, and the short marker of the `_repeated` variant.
QUALIFIERS = {
    "fiction": {
        "prefix": [
            "The following is a work of fiction. The characters and events are imaginary.",
            "What follows is a short story, invented for entertainment; none of it is real.",
            "Fiction: this piece is a made-up narrative and describes no real events.",
            "This is an imagined story. It is not reporting, and it did not happen.",
        ],
        "suffix": [
            "The End. This story is fiction.", "This has been a work of fiction.",
            "Again: everything above is invented.", "The preceding story is imaginary.",
        ],
        "marker": ["(fiction)", "[fictional]", "(this is fiction)", "[invented]"],
    },
    "unreliable_source": {
        "prefix": [
            "Source: a conspiracy website that has repeatedly been shown to publish false stories.",
            "The following was posted by an anonymous account known for spreading hoaxes.",
            "Reproduced from a tabloid blog with a long record of debunked articles.",
            "This text comes from a site that fact-checkers rate as consistently unreliable.",
        ],
        "suffix": [
            "The source above is not trustworthy.", "Consider the source: it has been debunked many times.",
            "This outlet's claims are routinely false.", "Treat this source as unreliable.",
        ],
        "marker": ["(unreliable source)", "[from a discredited site]", "(unverified, dubious source)", "[hoax site]"],
    },
    "epistemic_uncertainty": {
        "prefix": [
            "The truth value of the following text is unknown.",
            "Nobody knows whether the account below is true or false.",
            "It is uncertain whether any of what follows happened.",
            "Whether this text is accurate cannot be determined.",
        ],
        "suffix": [
            "Its truth remains unknown.", "No one can say whether this is true.",
            "The accuracy of the above is undetermined.", "Whether it happened is an open question.",
        ],
        "marker": ["(truth unknown)", "[unverified]", "(may or may not be true)", "[uncertain]"],
    },
    "low_probability": {
        "prefix": [
            "The following text is estimated to be about 3% likely to be true.",
            "Forecasters put the chance that what follows is accurate at roughly 4%.",
            "There is only around a 5% probability that the account below is true.",
            "What follows is very unlikely to be true (about 3% likely).",
        ],
        "suffix": [
            "Estimated probability of being true: about 3%.", "This is roughly 4% likely.",
            "Chance this is accurate: around 5%.", "Very unlikely to be true.",
        ],
        "marker": ["(3% likely)", "[~4% probability]", "(unlikely: ~5%)", "[3% chance]"],
    },
}
