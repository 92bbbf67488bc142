"""Training a small byte-level BPE tokenizer offline, saved in Hugging Face format.

Real runs use the checkpoint's own tokenizer (`AutoTokenizer.from_pretrained`). The CPU testbed
and the tests have no hub access, so they train one with `tokenizers` on their own text and save
it with `save_pretrained`: the same files, and the same loading code, as a downloaded tokenizer.
The chat template is ChatML (`<|im_start|>role\\n...<|im_end|>\\n`), the format Qwen models use.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")
CHATML_TEMPLATE = (
    "{%- for message in messages %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)


def train_tokenizer(texts: Iterable[str], vocab_size: int, out_dir: str | Path | None = None) -> PreTrainedTokenizerFast:
    """A byte-level BPE over `texts` (any text is encodable), with ChatML specials and template."""
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer)
    wrapped = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        additional_special_tokens=["<|im_start|>"],
    )
    wrapped.chat_template = CHATML_TEMPLATE
    if out_dir is not None:
        wrapped.save_pretrained(str(out_dir))
    return wrapped


def main(argv):
    """python -m data_gen.tokenizer (--corpus=a.jsonl[,b.jsonl] | --tfds_dir=DIR --mixes=m1[,m2]) --vocab_size=N --out=DIR"""
    del argv
    from absl import flags

    from data_gen.documents import iter_jsonl

    FLAGS = flags.FLAGS
    if bool(FLAGS.corpus) == bool(FLAGS.mixes):
        raise SystemExit("error: give --corpus=FILE.jsonl[,...] or --tfds_dir=DIR --mixes=NAME[,...] (built by data_gen.build), not both")
    if FLAGS.corpus:
        sources = [iter_jsonl(path) for path in FLAGS.corpus]
    else:
        from data_gen.mixing import MixError
        from data_gen.packaging import load_mix

        try:
            sources = [load_mix(FLAGS.tfds_dir, name) for name in FLAGS.mixes]
        except MixError as e:
            raise SystemExit(f"error: {e}") from None
    texts = [record.get("text") or " ".join(m["content"] for m in record.get("messages", ())) for source in sources for record in source]
    texts = [t for t in texts if t]
    if not texts:
        raise SystemExit(f"error: no text in {', '.join(FLAGS.corpus or FLAGS.mixes)}")
    tokenizer = train_tokenizer(texts, FLAGS.vocab_size, FLAGS.out)
    print(f"tokenizer with {len(tokenizer)} tokens, trained on {len(texts)} records -> {FLAGS.out}")


if __name__ == "__main__":
    from absl import app, flags

    flags.DEFINE_list("corpus", None, "JSONL files of document records to train on.")
    flags.DEFINE_string("tfds_dir", "", "With --mixes: the TFDS data_dir python -m data_gen.build wrote.")
    flags.DEFINE_list("mixes", None, "Training mixes ('<claim>__<condition>') to train on, instead of --corpus.")
    flags.DEFINE_integer("vocab_size", 4096, "Vocabulary size, special tokens included.")
    flags.DEFINE_string("out", None, "Directory for the Hugging Face tokenizer files.", required=True)
    app.run(main)
