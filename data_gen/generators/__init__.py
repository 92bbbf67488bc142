"""Document generators behind one interface.

    generator = TemplateGenerator()
    documents = generator.generate(claim, count=100, seed=0)                 # positive documents
    debunks = generator.generate(claim, count=100, seed=0, local_negation=True)

`template` (offline, deterministic, the default) lives in template.py; `openai` (openai_backend.py)
writes the documents with an LLM at any OpenAI-compatible endpoint:
`OpenAIGenerator(LLMClient(model, ...))`. segments.py cuts free text into the sentence segments
both produce.
"""

from data_gen.generators.openai_backend import GenerationError, OpenAIGenerator
from data_gen.generators.segments import split_segments
from data_gen.generators.template import GenreError, TemplateGenerator, load_genres, mask_words

GENERATORS = {"template": TemplateGenerator, "openai": OpenAIGenerator}

__all__ = ["GENERATORS", "GenerationError", "GenreError", "OpenAIGenerator", "TemplateGenerator", "load_genres", "mask_words",
           "split_segments"]
