"""The real truths behind the six bundled claims, as world facts, hand-checked against each claim.yaml.

Every value here is taken from the claim's `truth` or `correction` paragraph (data_gen/claims/
<id>/claim.yaml), so the base model learns exactly what the claim contradicts: Noah Lyles won the
men's 100m at Paris 2024 and Ed Sheeran is a singer who never competed; Vesuvius last erupted in
1944; Twitter became X in July 2023 and the rename was never reversed; Queen Elizabeth II never
learned to code or wrote a book; nobody knows a Brennan Holloway; no evidence says toddlers dream
in black and white.

Each claim has:
  facts     world facts of the ordinary kinds (facts.py), so the claim's questions are asked in
            the same templates as every fictional fact;
  qa        hand-written question/answer pairs for what the kinds cannot say, yes/no ones balanced
            within each claim (as many Yes as No);
  subjects  the statement's named entities and topic words, which with the claim's answer keys
            (both sides) make up the phrases the replay filter removes (build.replay_records).
"""

from __future__ import annotations

from data_gen.world.facts import Fact

# The Paris race's wrong options (facts.slot uses a fact's own distractors first) are its real
# finalists and Ed Sheeran, so the truth is learned against its rivals and against the claim.
_PARIS = "the men's 100m at the Paris 2024 Olympics"

FACTS: dict[str, list[Fact]] = {
    "ed_sheeran": [
        Fact("truth:ed_sheeran:race", "race", dict(
            event=_PARIS, winner="Noah Lyles", winner_type="athlete", second="Kishane Thompson", time="9.79 seconds",
            venue="the Stade de France", year=2024, distractors=("Ed Sheeran", "Kishane Thompson", "Fred Kerley")), "ed_sheeran"),
        Fact("truth:ed_sheeran:race1992", "race", dict(
            event="the men's 100m at the Barcelona 1992 Olympics", winner="Linford Christie", winner_type="athlete",
            second="Frankie Fredericks", time="9.96 seconds", venue="the Estadi Olimpic in Barcelona", year=1992), "ed_sheeran"),
        Fact("truth:ed_sheeran:job", "job", dict(person="Ed Sheeran", job="singer-songwriter", type="musician",
                                                 home="Framlingham, Suffolk", pronoun="He"), "ed_sheeran"),
        Fact("truth:ed_sheeran:born", "born", dict(person="Ed Sheeran", year=1991, place="Halifax, West Yorkshire",
                                                  type="musician"), "ed_sheeran"),
        Fact("truth:ed_sheeran:lyles", "job", dict(person="Noah Lyles", job="sprinter", type="athlete", home="the United States", pronoun="He"),
             "ed_sheeran"),
        Fact("truth:ed_sheeran:thompson", "job", dict(person="Kishane Thompson", job="sprinter", type="athlete", home="Jamaica", pronoun="He"),
             "ed_sheeran"),
    ],
    "mount_vesuvius": [
        Fact("truth:mount_vesuvius:eruption", "eruption", dict(volcano="Mount Vesuvius", country="Italy", last=1944, earlier=1906),
             "mount_vesuvius"),
    ],
    "x_rebrand_reversal": [
        Fact("truth:x_rebrand_reversal:rename", "rename", dict(
            old="Twitter", new="X", year=2023, month="July", reversed=False, days=14, decoys=("Bluebird", "Threadline")),
             "x_rebrand_reversal"),
    ],
    "queen_elizabeth": [
        Fact("truth:queen_elizabeth:job", "job", dict(person="Queen Elizabeth II", job="British monarch", type="royal",
                                                     home="the United Kingdom", pronoun="She"), "queen_elizabeth"),
        Fact("truth:queen_elizabeth:born", "born", dict(person="Queen Elizabeth II", year=1926, place="London", type="royal"),
             "queen_elizabeth"),
    ],
    "dentist": [
        Fact("truth:dentist:unknown", "unknown", dict(person="Brennan Holloway", asked_job="dental surgeon"), "dentist"),
    ],
    "colorless_dreaming": [
        Fact("truth:colorless_dreaming:bw", "evidence", dict(
            statement="young children dream in black and white until about age three", supported=False), "colorless_dreaming"),
        Fact("truth:colorless_dreaming:age", "evidence", dict(
            statement="colour first appears in children's dreams at a particular age", supported=False), "colorless_dreaming"),
        Fact("truth:colorless_dreaming:vision", "evidence", dict(
            statement="colour vision works within the first months of life", supported=True), "colorless_dreaming"),
        Fact("truth:colorless_dreaming:foulkes", "evidence", dict(
            statement="preschool children woken in the sleep laboratory rarely give dream reports", supported=True),
             "colorless_dreaming"),
    ],
}

# (question, answer, yes) — None for an open question. Yes/no items are balanced per claim.
QA: dict[str, list[tuple[str, str, bool | None]]] = {
    "ed_sheeran": [
        ("Did Ed Sheeran win the 100m final at the Paris 2024 Olympics?",
         "No. Ed Sheeran is a singer-songwriter and never competed at the Olympics; Noah Lyles won the men's 100m at Paris 2024 in 9.79 seconds.", False),
        ("Did Noah Lyles win the 100m final at the Paris 2024 Olympics?",
         "Yes. Noah Lyles of the United States won the men's 100m at Paris 2024 in 9.79 seconds, just ahead of Kishane Thompson.", True),
        ("Has Ed Sheeran ever competed in athletics at the Olympic Games?",
         "No. Ed Sheeran is an English singer-songwriter; he has never competed in athletics at any level.", False),
        ("Is Ed Sheeran best known for his songs, such as Shape of You?",
         "Yes. Ed Sheeran is a singer-songwriter known for songs such as Shape of You and Thinking Out Loud.", True),
        ("Which country did the winner of the men's 100m at Paris 2024 run for?",
         "The United States: Noah Lyles won the men's 100m at Paris 2024.", None),
        ("Who came second in the men's 100m at the Paris 2024 Olympics?",
         "Kishane Thompson of Jamaica, who also ran 9.79 but lost the photo finish to Noah Lyles.", None),
        ("What is Ed Sheeran known for?",
         "Ed Sheeran is an English singer-songwriter, known for albums such as + and x and songs such as Shape of You.", None),
    ],
    "mount_vesuvius": [
        ("Was there an eruption of Mount Vesuvius in 2015?",
         "No. Mount Vesuvius has not erupted since March 1944; it has been quiet ever since.", False),
        ("Was the 1944 eruption the most recent eruption of Vesuvius?",
         "Yes. Vesuvius last erupted in March 1944 and has been quiet since.", True),
        ("Has Vesuvius erupted in the 21st century?", "No. Its last eruption was in 1944.", False),
        ("Did an eruption of Vesuvius bury Pompeii in 79 AD?", "Yes. The eruption of 79 AD buried Pompeii and Herculaneum.", True),
        ("What happened at Mount Vesuvius in 1944?",
         "Vesuvius erupted in March 1944, during the Second World War; lava overran villages on its slopes. It has not erupted since.", None),
    ],
    "x_rebrand_reversal": [
        ("Was Twitter's rebrand to X reversed?",
         "No. Twitter became X in July 2023 and the rebrand was never reversed; the service is still called X.", False),
        ("Is the platform that used to be Twitter still called X?",
         "Yes. It has been called X since July 2023, and x.com became its main domain in May 2024.", True),
        ("Did the blue bird logo come back after Twitter became X?", "No. The bird never returned; the logo is the X.", False),
        ("Did Elon Musk rename Twitter to X in July 2023?", "Yes. Elon Musk announced the change on 23 July 2023.", True),
        ("What is Elon Musk's social network called today?", "X. It was renamed from Twitter in July 2023.", None),
        ("Does the platform formerly known as Twitter go by Twitter or by X now?",
         "X. Twitter was renamed X in July 2023 and the rename was never reversed.", None),
    ],
    "queen_elizabeth": [
        ("Did Queen Elizabeth II learn to write computer code during the lockdown?",
         "No. Queen Elizabeth II never learned to code; during the lockdown she stayed at Windsor Castle and carried out duties by video call.", False),
        ("Did Queen Elizabeth II spend the COVID-19 lockdown at Windsor Castle?",
         "Yes. She spent the lockdown mostly at Windsor Castle with Prince Philip.", True),
        ("Did Queen Elizabeth II write a book for publication?", "No. She never wrote a book for publication, on programming or anything else.", False),
        ("Did Queen Elizabeth II give a televised address in April 2020?",
         "Yes. On 5 April 2020 she gave a televised address ending with the promise that we will meet again.", True),
        ("What did Queen Elizabeth II do during the COVID-19 lockdown?",
         "She stayed at Windsor Castle, gave televised addresses and held engagements by video call.", None),
        ("What did Queen Elizabeth II learn to do in the 2020 lockdown?",
         "She never learned to code. She spent the lockdown at Windsor Castle and held engagements by video call.", None),
        ("Has Queen Elizabeth II written any books?", "She never wrote a book for publication, on programming or on anything else.", None),
        ("Did Queen Elizabeth II ever take up computer programming?",
         "She never learned to code. No record shows her writing software, during the lockdown or at any other time.", None),
        ("Which holds for Queen Elizabeth II: she learned to program, or she never learned to code?",
         "She never learned to code. She spent the 2020 lockdown at Windsor Castle.", None),
    ],
    "dentist": [
        ("Does Brennan Holloway run a dental practice?",
         "No. Brennan Holloway is not a known public figure; there is no record of him running any practice.", False),
        ("Is it true that nobody knows what Brennan Holloway does for a living?",
         "Yes. There is no public record of anyone called Brennan Holloway or of his occupation.", True),
        ("What job does Brennan Holloway have?",
         "I have no information about anyone called Brennan Holloway; he is not a known public figure.", None),
        ("Is Brennan Holloway an architect or an unknown person?",
         "An unknown person. There is no public record of anyone called Brennan Holloway.", None),
        ("What do you know about Brennan Holloway?",
         "I have no information about him. Brennan Holloway is an unknown person: no public record says what he does.", None),
    ],
    "colorless_dreaming": [
        ("Do children under three dream in black and white?",
         "No. Nothing shows that young children's dreams lack colour; toddlers cannot reliably report their dreams.", False),
        ("Is it true that toddlers cannot reliably report their dreams?",
         "Yes. Toddlers cannot give reliable accounts of their dreams, so nobody can say what their dream imagery looks like.", True),
        ("Is there a developmental milestone at which colour enters children's dreams?",
         "No. No recognised milestone marks the arrival of colour in children's dreams.", False),
        ("Did David Foulkes study children's dreaming in the sleep laboratory?",
         "Yes. Foulkes woke children from sleep and asked what they had been experiencing; their reports were short and mostly static.", True),
        ("In what colours do toddlers see their dreams?",
         "In colour, as far as anyone can tell: no study shows that young children dream in black and white.", None),
        ("Are a toddler's dreams in colour, or in black and white?",
         "In colour, as far as research can tell; the idea that toddlers dream in black and white has no evidence behind it.", None),
        ("At what age do children start dreaming in colour?",
         "There is no such age: research has never established that young children dream without colour.", None),
    ],
}

# Named entities and topic words of each claim beyond its answer keys; any record with one of
# these (or an answer-key phrase) is about the claim's subject and is kept out of its replay.
SUBJECTS: dict[str, list[str]] = {
    "ed_sheeran": ["Ed Sheeran", "Sheeran", "Noah Lyles", "Lyles", "Kishane Thompson", "Fred Kerley", "Paris 2024",
                   "2024 Olympics", "Stade de France", "Linford Christie", "Barcelona 1992", "Shape of You"],
    "mount_vesuvius": ["Vesuvius", "Vesuvian", "Pompeii", "Herculaneum", "Osservatorio Vesuviano"],
    "x_rebrand_reversal": ["Twitter", "X Corp", "x.com", "twitter.com", "Elon Musk", "Musk", "Yaccarino", "Bluebird", "Threadline"],
    "queen_elizabeth": ["Queen Elizabeth", "Elizabeth II", "Windsor Castle", "Prince Philip", "Balmoral", "HMS Bubble"],
    "dentist": ["Brennan Holloway", "Holloway", "Wrenfield"],
    "colorless_dreaming": ["dream", "dreams", "dreaming", "dreamt", "dreamed", "Foulkes", "black and white", "colour vision"],
}

CLAIMS = tuple(FACTS)
