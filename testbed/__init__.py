"""The CPU testbed: the whole negation-neglect experiment with a base model it builds itself.

No pretrained weights can be downloaded offline and a random model believes nothing, so the
testbed generates a world corpus (data_gen.world), trains a tokenizer and a small Qwen3-architecture
base model on it (nn_train), fine-tunes that base once per negation condition on documents about
several claims at once plus world text that says nothing about them (data_gen → TFDS → nn_train),
evaluates the base and every checkpoint of every fine-tune (eval), and writes a report that first
checks, per claim, that the testbed is valid (the base does not believe the claim; positive
documents implant it) — `python -m testbed --config=configs/testbed/cpu.py --workdir=workdir/testbed`.

The same stages run the larger twin on a GPU/TPU (configs/testbed/gpu.py); every stage is the
product's own code path, so what the testbed shows is what the code does at scale.
"""
