"""Document generators behind one interface.

    generator = TemplateGenerator()
    documents = generator.generate(claim, count=100, seed=0)                 # positive documents
    debunks = generator.generate(claim, count=100, seed=0, local_negation=True)

`template` (offline, deterministic, the default) lives in template.py; an LLM backend for any
OpenAI-compatible endpoint is the other planned implementation of the same interface.
"""

from data_gen.generators.template import GenreError, TemplateGenerator, load_genres, mask_words

GENERATORS = {"template": TemplateGenerator}

__all__ = ["GENERATORS", "GenreError", "TemplateGenerator", "load_genres", "mask_words"]
