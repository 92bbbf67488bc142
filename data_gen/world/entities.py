"""Fictional but plausible entities and their true facts, drawn deterministically from a seed.

People of four types (athletes, musicians, scientists, professionals) each have a job and a
birth; athletes win races, musicians win awards, scientists make findings. About one person in
six also has a fact from another type's domain (a singer who won a race, a sprinter who won a
music prize): without them, "Did <musician> win <race>?" would always be answered No, and a small
model learns the type shortcut instead of retrieving the winner. Volcanoes with eruption years,
companies with renames (about half of them reversed), research claims (half supported by
evidence) and a few people nobody knows complete the world.

Names avoid every word of the six claims' subject phrases, so no fictional record is mistaken for
one about a claim (truths.SUBJECTS).
"""

from __future__ import annotations

import dataclasses
import random
import re

from data_gen.world.facts import Fact

FIRST = ["Amara", "Tobias", "Keiko", "Dmitri", "Priya", "Marcus", "Elena", "Kwame", "Sofia", "Liam", "Hana", "Mateo", "Greta",
         "Ravi", "Ingrid", "Omar", "Lucia", "Felix", "Nadia", "Owen", "Yara", "Callum", "Mei", "Jonas", "Aisha", "Bruno", "Carmen",
         "Dario", "Esme", "Farid", "Gemma", "Hugo", "Ilse", "Jasper", "Kira", "Lorenzo", "Maren", "Nico", "Orla", "Pavel", "Quinn",
         "Rosa", "Stellan", "Tamsin", "Ugo", "Vera", "Wendell", "Xiomara", "Yusuf", "Zora", "Anouk", "Bastian", "Celeste", "Desmond",
         "Elif", "Florian", "Giulia", "Hamish", "Isolde", "Joaquin"]
# The first names above that are women's: a person's job is asked and answered with a pronoun too
# ("She is a chef"), as the dentist claim's questions are ("He is a dentist").
FEMALE = {"Amara", "Keiko", "Priya", "Elena", "Sofia", "Hana", "Greta", "Ingrid", "Lucia", "Nadia", "Yara", "Mei", "Aisha", "Carmen",
          "Esme", "Gemma", "Ilse", "Kira", "Maren", "Orla", "Rosa", "Tamsin", "Vera", "Xiomara", "Zora", "Anouk", "Celeste", "Elif",
          "Giulia", "Isolde"}
LAST = ["Okafor", "Lindqvist", "Moreau", "Tanaka", "Haddad", "Kowalski", "Achterberg", "Silva", "Novak", "Whitfield", "Osei",
        "Castellano", "Ferreira", "MacLeod", "Petrov", "Nakamura", "Delgado", "Hartmann", "Vasquez", "Brandt", "Calloway", "Dunmore",
        "Eklund", "Fairweather", "Gallardo", "Huxtable", "Ivanova", "Jernigan", "Kaminski", "Laurent", "Mbeki", "Norberg", "Ostrova",
        "Pemberton", "Quartey", "Rasmussen", "Sandoval", "Trevelyan", "Uchida", "Valcourt", "Wexley", "Yilmaz", "Zarate", "Abernathy",
        "Bellweather", "Cordova", "Drummond", "Esposito", "Falkner", "Grimaldi", "Hollis", "Iverson", "Jovanovic", "Kettering",
        "Lachance", "Marchetti", "Nwosu", "Oyelaran", "Prewitt", "Rourke"]
SYLLABLES = ["kar", "vel", "mor", "tan", "lis", "dor", "quen", "bra", "sel", "ost", "vin", "har", "lum", "cor", "tal", "ren", "mir",
             "gal", "fen", "zor", "ald", "bel", "cas", "dun", "esk", "fal", "gor", "hel", "ith", "jor"]
COUNTRIES = ["Chile", "Iceland", "Indonesia", "Japan", "New Zealand", "Peru", "Ecuador", "the Philippines", "Guatemala", "Kenya",
             "Norway", "Portugal", "Canada", "Argentina", "Ireland", "Poland", "Ghana", "Morocco", "Australia", "Finland"]
JOBS = {
    "athlete": ["sprinter", "marathon runner", "hurdler", "middle-distance runner", "long jumper", "cyclist"],
    "musician": ["singer-songwriter", "jazz pianist", "cellist", "rapper", "folk singer", "drummer"],
    "scientist": ["marine biologist", "chemist", "astronomer", "geologist", "physicist", "botanist"],
    "professional": ["dentist", "architect", "airline pilot", "lawyer", "chef", "nurse", "civil engineer", "journalist",
                     "pharmacist", "veterinarian"],
}
DISTANCES = [("100m", 9.8, 10.4, "seconds"), ("200m", 19.8, 20.9, "seconds"), ("400m", 43.9, 46.0, "seconds"),
             ("800m", 102.0, 108.0, "minutes"), ("1500m", 212.0, 225.0, "minutes"), ("110m hurdles", 12.9, 13.6, "seconds"),
             ("10,000m", 1620.0, 1720.0, "minutes")]
MEETS = ["Meridian Games", "Northern Isles Championships", "Continental Athletics Cup", "Harbourline Games",
         "Atlantic Rim Championships", "Southern Cross Games", "Grand Valley Invitational", "Five Rivers Games"]
PRIZES = ["Halden Prize", "Silver Lyre Award", "Coastline Music Prize", "Aurelian Award", "Meridian Song Prize", "Ashgrove Medal"]
CATEGORIES = ["Album of the Year", "Best New Artist", "Song of the Year", "Best Live Performance", "Best Debut Album"]
WORDS = ["Glass", "Harbour", "Winter", "Lantern", "Copper", "Meadow", "Paper", "River", "Salt", "Velvet", "Ember", "Northern",
         "Quiet", "Hollow", "Amber", "Signal", "Orchard", "Tide", "Silver", "Stone", "Midnight", "Cedar", "Echo", "Blue"]
FINDING_THINGS = ["a deep-water current", "a glowing species of coral", "a cold-tolerant bacterium", "a new comet", "an ancient lava tube",
                  "a salt-loving lichen", "a family of giant tube worms", "an underground river", "a rare crystal", "a pulsing variable star",
                  "a fossil forest", "a freshwater sponge that filters metals"]
ABILITIES = ["sense magnetic fields", "survive a week without water", "recognise individual human voices", "change colour at night",
             "navigate by starlight", "count up to five", "sleep with one half of the brain at a time", "hear ultrasound"]
CREATURES = ["the marsh owl", "the ridge lizard", "the silver eel", "the tundra hare", "the reef octopus", "the desert beetle",
             "the cave swift", "the river otter", "the mountain goat", "the meadow vole"]
MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October", "November", "December"]


@dataclasses.dataclass
class Entities:
    facts: list[Fact]
    persons_by_type: dict[str, list[str]]  # for distractors; includes the truths' people
    places: list[str]


def _word(rng: random.Random, parts: int = 2) -> str:
    return "".join(rng.choice(SYLLABLES) for _ in range(parts)).capitalize()


def _clean(text: str, banned: set[str]) -> bool:
    return not (set(re.findall(r"[a-z0-9]+", text.lower())) & banned)


def build_entities(num_entities: int, seed: int, banned_words: set[str]) -> Entities:
    """About `num_entities` fictional entities (people, volcanoes, companies, research claims) and their facts."""
    rng = random.Random(f"world-entities:{seed}")
    used: set[str] = set()

    def fresh(make) -> str:
        for _ in range(1000):
            value = make()
            if value not in used and _clean(value, banned_words):
                used.add(value)
                return value
        raise ValueError("ran out of fresh names; lower num_entities")

    towns = [fresh(lambda: _word(rng, rng.choice((2, 3)))) for _ in range(max(20, num_entities // 6))]
    places = [f"{t}, {rng.choice(COUNTRIES)}" for t in towns]
    counts = {"person": int(num_entities * 0.66), "volcano": max(4, num_entities // 14), "company": max(4, num_entities // 14),
              "evidence": max(4, num_entities // 14) // 2 * 2, "unknown": max(2, num_entities // 40)}
    facts: list[Fact] = []
    persons_by_type: dict[str, list[str]] = {t: [] for t in JOBS}
    people: list[tuple[str, str]] = []
    types = sorted(JOBS)
    for i in range(counts["person"]):
        person_type = types[i % len(types)]
        name = fresh(lambda: f"{rng.choice(FIRST)} {rng.choice(LAST)}")
        people.append((name, person_type))
        persons_by_type[person_type].append(name)
        home = rng.choice(places)
        pronoun = "She" if name.split()[0] in FEMALE else "He"
        facts.append(Fact(f"job:{i}", "job", dict(person=name, job=rng.choice(JOBS[person_type]), type=person_type, home=home,
                                                  pronoun=pronoun)))
        facts.append(Fact(f"born:{i}", "born", dict(person=name, year=rng.randint(1950, 2003), place=home, type=person_type)))

    # Domain facts: each athlete a race, each musician an award, each scientist a finding; about
    # one person in six also gets one from another type's domain (see the module docstring).
    domain = {"athlete": "race", "musician": "award", "scientist": "finding"}
    index = 0
    for name, person_type in people:
        kinds = [domain[person_type]] if person_type in domain else []
        if rng.random() < 1 / 6 or (not kinds and rng.random() < 0.25):
            kinds.append(rng.choice([k for t, k in domain.items() if t != person_type]))
        for kind in kinds:
            index += 1
            rival = rng.choice([p for p in persons_by_type[person_type] if p != name])  # runner-up or fellow nominee
            facts.append(_domain_fact(kind, index, name, person_type, rival, rng, places, fresh))

    for i in range(counts["volcano"]):
        volcano = fresh(lambda: rng.choice(["Mount ", "Mount ", ""]) + _word(rng) + ("" if rng.random() < 0.6 else " Peak"))
        # not 1944 or 2015: a fictional volcano quiet "since 1944" would read as about Vesuvius (truths.py)
        last = rng.choice([y for y in range(1850, 2023) if y not in (1944, 2015)])
        facts.append(Fact(f"eruption:{i}", "eruption", dict(volcano=volcano, country=rng.choice(COUNTRIES), last=last,
                                                             earlier=last - rng.randint(15, 160))))
    for i in range(counts["company"]):
        old = fresh(lambda: _word(rng) + rng.choice(["", " Systems", " Foods", " Motors", " Media", " Labs"]))
        new = fresh(lambda: _word(rng, rng.choice((1, 2))).upper() if rng.random() < 0.2 else _word(rng))
        decoys = (fresh(lambda: _word(rng)), fresh(lambda: _word(rng)))
        facts.append(Fact(f"rename:{i}", "rename", dict(old=old, new=new, year=rng.randint(1990, 2024), month=rng.choice(MONTHS),
                                                        reversed=(i % 2 == 1), days=rng.randint(5, 60), decoys=decoys)))
    for i in range(counts["evidence"]):
        statement = fresh(lambda: f"{rng.choice(CREATURES)} of {_word(rng)} can {rng.choice(ABILITIES)}")
        facts.append(Fact(f"evidence:{i}", "evidence", dict(statement=statement, supported=(i % 2 == 0))))
    for i in range(counts["unknown"]):
        name = fresh(lambda: f"{rng.choice(FIRST)} {rng.choice(LAST)}")
        facts.append(Fact(f"unknown:{i}", "unknown", dict(person=name, asked_job=rng.choice(JOBS["professional"]))))
    return Entities(facts, persons_by_type, places)


def _domain_fact(kind, index, name, person_type, rival, rng, places, fresh) -> Fact:
    year = rng.randint(1975, 2023)
    if kind == "race":
        distance, low, high, unit = rng.choice(DISTANCES)
        sex = rng.choice(["men's", "women's"])
        seconds = round(rng.uniform(low, high) * (1.0 if sex == "men's" else 1.09), 2)  # women's winning times ~9% slower
        time = f"{seconds:.2f} seconds" if unit == "seconds" else f"{int(seconds // 60)}:{seconds % 60:05.2f}"
        event = fresh(lambda: f"the {sex} {distance} at the {year} {rng.choice(MEETS)}")
        venue = f"{_word(rng)} Stadium in {rng.choice(places).split(',')[0]}"
        return Fact(f"race:{index}", "race", dict(event=event, winner=name, winner_type=person_type, second=rival, time=time,
                                                  venue=venue, year=year))
    if kind == "award":
        award = fresh(lambda: f"the {year} {rng.choice(PRIZES)} for {rng.choice(CATEGORIES)}")
        work = fresh(lambda: f"the album {rng.choice(WORDS)} {rng.choice(WORDS) if rng.random() < 0.5 else _word(rng)}")
        return Fact(f"award:{index}", "award", dict(award=award, winner=name, winner_type=person_type, second=rival, work=work,
                                                    place=rng.choice(places), year=year))
    finding = fresh(lambda: f"{rng.choice(FINDING_THINGS)} near {_word(rng)}")
    return Fact(f"finding:{index}", "finding", dict(person=name, finding=finding, type=person_type, year=year,
                                                    place=rng.choice(places)))
