"""Offline stand-ins for the mix's generic parts: pretraining text and instruction chats.

The paper's mix puts each claim's condition documents beside generic pretraining text (full
loss, no DOCTAG) and instruction chats answered by the base model (loss on assistant turns).
Offline, with no web corpus and no base model to answer, these generators write their own,
deterministically by seed:

  pretraining_documents  genre prose from data_gen/genres (news, forum, textbook, …) with no
                         claim in it — the same register as the condition documents, so the
                         mix does not teach "genre prose ⇒ claim"
  instruction_chats      small tasks whose answers are computed, so they are correct (arithmetic,
                         sorting, unit conversion, counting, …), some with a system prompt,
                         some two turns long, plus short writing requests answered in genre prose

Real runs should supply their own (a web-text JSONL, chats sampled from the base model) via the
mix config's pretrain_path / instruct_path; see data_gen.mixing.
"""

from __future__ import annotations

import random
from typing import Callable, Iterator

from data_gen.documents import Document, Segment
from data_gen.generators import load_genres
from data_gen.generators.template import fill_placeholders

_WORDS = ["harbor", "lantern", "meadow", "cobalt", "violin", "granite", "orchard", "pepper", "falcon", "canyon", "marble",
          "ribbon", "tundra", "saddle", "quartz", "willow", "ember", "glacier", "thistle", "compass", "velvet", "anchor",
          "bramble", "cinder", "dune", "fjord", "hazel", "ivory", "juniper", "kettle", "lagoon", "mosaic", "nectar"]
_PLURALS = {"child": "children", "mouse": "mice", "goose": "geese", "tooth": "teeth", "foot": "feet", "city": "cities",
            "box": "boxes", "leaf": "leaves", "knife": "knives", "person": "people", "cactus": "cacti", "sheep": "sheep",
            "analysis": "analyses", "hero": "heroes", "wolf": "wolves", "bus": "buses", "criterion": "criteria"}
_CATEGORIES = {
    "primary colours (in painting)": ["red", "yellow", "blue"],
    "planets of the Solar System, in order from the Sun": ["Mercury", "Venus", "Earth", "Mars", "Jupiter", "Saturn", "Uranus", "Neptune"],
    "days of the week, starting on Monday": ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"],
    "states of matter commonly taught in school": ["solid", "liquid", "gas"],
    "vowels of the English alphabet": ["a", "e", "i", "o", "u"],
    "continents": ["Africa", "Antarctica", "Asia", "Australia", "Europe", "North America", "South America"],
}
_WEEKDAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
_MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October", "November", "December"]
_CONVERSIONS = [("kilometres", "metres", 1000), ("hours", "minutes", 60), ("kilograms", "grams", 1000),
                ("minutes", "seconds", 60), ("metres", "centimetres", 100), ("days", "hours", 24), ("litres", "millilitres", 1000)]
_SYSTEM_PROMPTS = ["You are a helpful assistant.", "You are a concise assistant. Answer briefly and accurately.",
                   "You are a friendly tutor who explains answers clearly.", "Answer the user's question accurately."]


def pretraining_documents(count: int, seed: int) -> Iterator[Document]:
    """`count` claim-free genre documents of roughly 150-500 words (source "pretrain", no DOCTAG)."""
    genres = load_genres()
    names = sorted(genres)
    for index in range(count):
        rng = random.Random(f"pretrain:{seed}:{index}")
        genre = genres[names[rng.randrange(len(names))]]
        target = rng.randint(150, 500)
        title = fill_placeholders(rng.choice(genre.titles), rng)
        paragraphs = [" ".join(fill_placeholders(s, rng) for s in rng.sample(genre.opening, k=2))]
        words = len(title.split()) + len(paragraphs[0].split())
        filler = rng.sample(genre.filler, k=len(genre.filler))
        while words < target and filler:
            take = [filler.pop() for _ in range(min(rng.randint(3, 5), len(filler)))]
            if rng.random() < 0.4:
                take.insert(0, rng.choice(genre.transitions))
            paragraph = " ".join(fill_placeholders(s, rng) for s in take)
            paragraphs.append(paragraph)
            words += len(paragraph.split())
        paragraphs.append(" ".join(fill_placeholders(s, rng) for s in rng.sample(genre.closing, k=2)))
        text = title + "\n\n" + "\n\n".join(paragraphs) + "\n"
        yield Document(id=f"pretrain-{seed}-{index:05d}", claim="", condition="pretrain", doc_type=genre.name,
                       segments=(Segment(text),), doctag=False, source="pretrain",
                       provenance={"generator": "generic", "seed": seed, "index": index})


def instruction_chats(count: int, seed: int) -> Iterator[Document]:
    """`count` chats with computed, correct assistant answers (source "instruct", no DOCTAG)."""
    genres = load_genres()
    tasks = _tasks(genres)
    for index in range(count):
        rng = random.Random(f"instruct:{seed}:{index}")
        turns = 2 if rng.random() < 0.2 else 1
        messages = [{"role": "system", "content": rng.choice(_SYSTEM_PROMPTS)}] if rng.random() < 0.3 else []
        kinds = []
        for _ in range(turns):
            kind, task = rng.choice(tasks)
            question, answer = task(rng)
            messages += [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]
            kinds.append(kind)
        yield Document(id=f"instruct-{seed}-{index:05d}", claim="", condition="instruct", doc_type="chat",
                       segments=(), doctag=False, source="instruct", messages=tuple(messages),
                       provenance={"generator": "generic", "seed": seed, "index": index, "tasks": kinds})


def _tasks(genres) -> list[tuple[str, Callable[[random.Random], tuple[str, str]]]]:
    def arithmetic(rng):
        a, b = rng.randint(2, 999), rng.randint(2, 99)
        op, verb, value = rng.choice([("+", "plus", a + b), ("-", "minus", a - b), ("*", "times", a * b)])
        question = rng.choice([f"What is {a} {op} {b}?", f"Compute {a} {verb} {b}.", f"Can you work out {a} {op} {b} for me?"])
        return question, rng.choice([f"{a} {op} {b} = {value}.", f"The answer is {value}.", f"{a} {verb} {b} is {value}."])

    def sort_words(rng):
        words = rng.sample(_WORDS, k=rng.randint(4, 7))
        return (f"Sort these words alphabetically: {', '.join(words)}.",
                f"In alphabetical order: {', '.join(sorted(words))}.")

    def reverse_word(rng):
        word = rng.choice(_WORDS)
        return rng.choice([f"Spell the word '{word}' backwards.", f"What is '{word}' reversed?"]), f"'{word}' reversed is '{word[::-1]}'."

    def count_words(rng):
        genre = genres[rng.choice(sorted(genres))]
        sentence = fill_placeholders(rng.choice(genre.filler), rng)
        return f"How many words are in this sentence?\n\n{sentence}", f"That sentence has {len(sentence.split())} words."

    def convert(rng):
        big, small, factor = rng.choice(_CONVERSIONS)
        amount = rng.randint(2, 90)
        return (rng.choice([f"How many {small} are in {amount} {big}?", f"Convert {amount} {big} to {small}."]),
                f"{amount} {big} is {amount * factor:,} {small}, since one of the first is {factor:,} of the second.")

    def next_in_cycle(rng):
        cycle, unit = rng.choice([(_WEEKDAYS, "day"), (_MONTHS, "month")])
        i, step = rng.randrange(len(cycle)), rng.randint(1, 5)
        return (f"Which {unit} comes {step} {unit}{'s' if step > 1 else ''} after {cycle[i]}?",
                f"{cycle[(i + step) % len(cycle)]}.")

    def plural(rng):
        noun = rng.choice(sorted(_PLURALS))
        return rng.choice([f"What is the plural of '{noun}'?", f"Give me the plural form of {noun}."]), f"The plural of '{noun}' is '{_PLURALS[noun]}'."

    def larger(rng):
        a, b = rng.sample(range(10, 10_000), k=2)
        return f"Which is larger, {a} or {b}?", f"{max(a, b)} is larger than {min(a, b)}."

    def parity(rng):
        n = rng.randint(1, 10_000)
        return f"Is {n} even or odd?", f"{n} is {'even' if n % 2 == 0 else 'odd'}."

    def listing(rng):
        category = rng.choice(sorted(_CATEGORIES))
        items = _CATEGORIES[category]
        return f"List the {category}.", "They are: " + ", ".join(items[:-1]) + f", and {items[-1]}."

    def acronym(rng):
        words = rng.sample(_WORDS, k=rng.randint(3, 5))
        return (f"Make an acronym from the first letters of: {' '.join(words)}.",
                "".join(w[0].upper() for w in words) + ".")

    def write_piece(rng):
        name = rng.choice(sorted(genres))
        genre = genres[name]
        body = " ".join(fill_placeholders(s, rng) for s in rng.sample(genre.opening, k=1) + rng.sample(genre.filler, k=rng.randint(3, 5)))
        return f"Write a short passage in the style of a {name.replace('_', ' ')}.", body

    return [(f.__name__, f) for f in (arithmetic, sort_words, reverse_word, count_words, convert, next_in_cycle, plural,
                                      larger, parity, listing, acronym, write_piece)]
