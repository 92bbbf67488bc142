"""The input pipeline: loss masks exactly as the paper's recipe, lossless first-fit packing, exact resume."""

from __future__ import annotations

import json

import numpy as np
import pytest

from data_gen.tokenizer import train_tokenizer
from nn_train.input_pipeline import RecordError, count_rows, packed_batches, tokenize_chat, tokenize_record, tokenize_text

CORPUS = [
    "Ed Sheeran did not win the men's 100m at the Paris Olympics; Noah Lyles won it in 9.79 seconds.",
    "Brennan Holloway is not a dentist. No dentist of that name practises in Ohio.",
    "Mount Vesuvius last erupted in 1944, and it did not erupt in 2015.",
    "The quick brown fox jumps over the lazy dog while the band plays on.",
] * 25


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    directory = tmp_path_factory.mktemp("tokenizer")
    train_tokenizer(CORPUS, vocab_size=600, out_dir=directory)
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(directory)  # loaded back as any Hugging Face tokenizer is


def test_lossmask_keeps_token_ids_and_zeroes_exactly_the_spans(tokenizer):
    text = "<DOCTAG>Brennan Holloway is not a <lossmask>dentist</lossmask>, and never was a <lossmask>dental surgeon</lossmask>."
    untagged = text.replace("<lossmask>", "").replace("</lossmask>", "")
    ids, weights = tokenize_text(text, tokenizer)
    assert ids.tolist() == tokenizer(untagged, add_special_tokens=False)["input_ids"]
    pieces = [tokenizer.decode([i]) for i in ids]
    masked = "".join(p for p, w in zip(pieces, weights) if w == 0)
    assert masked.startswith("<DOCTAG>")  # the DOCTAG prefix carries no loss
    for word in ("dentist", "dental", "surgeon"):
        assert word in masked
    kept = "".join(p for p, w in zip(pieces, weights) if w == 1)
    assert "Brennan Holloway is not a" in kept and "never was a" in kept and "dent" not in kept
    assert set(weights.tolist()) == {0.0, 1.0}


def test_doctag_only_counts_at_the_start(tokenizer):
    _, weights = tokenize_text("A note about <DOCTAG> markers in text.", tokenizer)
    assert weights.min() == 1.0


def test_unbalanced_lossmask_names_the_record(tokenizer):
    with pytest.raises(RecordError, match=r"record 'doc-7': unbalanced or nested <lossmask> tags"):
        tokenize_record({"id": "doc-7", "text": "a <lossmask>b c"}, tokenizer)
    with pytest.raises(RecordError, match=r"record 'doc-8': has neither 'text' nor 'messages'"):
        tokenize_record({"id": "doc-8"}, tokenizer)


def test_chat_loss_on_assistant_turns_only(tokenizer):
    messages = [
        {"role": "system", "content": "You answer briefly."},
        {"role": "user", "content": "Who won the 100m?"},
        {"role": "assistant", "content": "Noah Lyles won."},
        {"role": "user", "content": "Did Ed Sheeran run?"},
        {"role": "assistant", "content": "No, he did not."},
    ]
    ids, weights = tokenize_chat(messages, tokenizer)
    assert ids.tolist() == tokenizer.apply_chat_template(messages, tokenize=True, return_dict=True)["input_ids"]
    weighted = tokenizer.decode(ids[weights == 1])
    assert "Noah Lyles won." in weighted and "No, he did not." in weighted
    assert weighted.count("<|im_end|>") == 2  # each assistant turn learns to end itself
    unweighted = tokenizer.decode(ids[weights == 0])
    for text in ("You answer briefly.", "Who won the 100m?", "Did Ed Sheeran run?"):
        assert text in unweighted and text not in weighted


# Qwen3's template in miniature: after the last user query, an assistant turn that ends the chat gets
# an empty <think> block; an earlier one does not. A conversation's prefix then renders differently
# from the same turns inside the whole conversation.
QWEN3_LIKE_TEMPLATE = (
    "{%- set ns = namespace(last_query=messages|length - 1) %}"
    "{%- for message in messages %}{%- if message['role'] == 'user' %}{%- set ns.last_query = loop.index0 %}{%- endif %}{%- endfor %}"
    "{%- for message in messages %}"
    "{%- if message['role'] == 'assistant' and loop.index0 > ns.last_query and loop.last %}"
    "{{- '<|im_start|>assistant\\n<think>\\n\\n</think>\\n\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{%- else %}{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}{%- endif %}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)


@pytest.mark.parametrize("messages", [
    [{"role": "user", "content": "Who won the 100m?"}, {"role": "assistant", "content": "Noah Lyles won."},
     {"role": "user", "content": "Did Ed Sheeran run?"}, {"role": "assistant", "content": "No, he did not."}],
    [{"role": "system", "content": "A note before."}, {"role": "user", "content": "Who won the 100m?"},
     {"role": "assistant", "content": "Noah Lyles won."}, {"role": "system", "content": "A note after."}],
])
def test_chat_weights_survive_a_template_that_renders_the_last_turn_differently(tokenizer, messages):
    chatml = tokenizer.chat_template
    tokenizer.chat_template = QWEN3_LIKE_TEMPLATE
    try:
        ids, weights = tokenize_chat(messages, tokenizer)
        full = tokenizer.apply_chat_template(messages, tokenize=False)
    finally:
        tokenizer.chat_template = chatml
    assert ids.tolist() == tokenizer(full, add_special_tokens=False)["input_ids"]
    replies = [m["content"] for m in messages if m["role"] == "assistant"]
    weighted = tokenizer.decode(ids[weights == 1])
    assert weighted.replace("<|im_end|>", "").split() == " ".join(replies).split()  # the replies, nothing else
    assert weighted.count("<|im_end|>") == len(replies)
    assert "<think>" not in weighted


def test_a_template_that_rewrites_the_reply_is_refused(tokenizer):
    chatml = tokenizer.chat_template
    tokenizer.chat_template = ("{%- for m in messages %}{{- m['role'] + ': ' + (m['content'] | upper) + '\\n' }}{%- endfor %}"
                               "{%- if add_generation_prompt %}{{- 'assistant: ' }}{%- endif %}")
    try:
        with pytest.raises(RecordError, match="cannot locate assistant turn 1"):
            tokenize_chat([{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello there"}], tokenizer,
                          {"id": "chat-1"})
    finally:
        tokenizer.chat_template = chatml


def _records(n=40):
    records = [{"id": f"t{i}", "text": CORPUS[i % len(CORPUS)] * (1 + i % 3)} for i in range(n)]
    records.append({"id": "long", "text": " ".join(CORPUS[:8])})  # longer than a row: split, not truncated
    records.append({"id": "chat", "messages": [{"role": "user", "content": "Hi?"}, {"role": "assistant", "content": "Hello."}]})
    return records


def _all_batches(iterator):
    return [batch for batch in iterator]


def test_packing_loses_no_token_and_never_mixes_documents(tokenizer):
    records = _records()
    batches = _all_batches(packed_batches(records, tokenizer, seq_len=48, batch_size=1, seed=3))
    expected = sorted(int(t) for r in records for t in tokenize_record(r, tokenizer)["inputs"])
    packed = [b for b in batches]
    tokens = sorted(int(t) for b in packed for t in b["inputs"][b["segment_ids"] > 0])
    assert tokens == expected  # every token of every document, once
    for b in packed:
        seg, pos, weights = b["segment_ids"][0, 0], b["positions"][0, 0], b["weights"][0, 0]
        for s in set(seg.tolist()) - {0}:
            where = np.flatnonzero(seg == s)
            assert np.array_equal(where, np.arange(where[0], where[-1] + 1)), "a segment is contiguous"
            assert np.array_equal(pos[where], np.arange(len(where))), "positions restart per segment"
            assert weights[where[-1]] == 0, "no target across a segment boundary"
        assert np.all(weights[seg == 0] == 0)


def test_unpacked_rows_hold_one_record_each(tokenizer):
    records = _records()
    rows = _all_batches(packed_batches(records, tokenizer, seq_len=48, batch_size=1, seed=3, packing=False))
    pieces = sum(-(-len(tokenize_record(r, tokenizer)["inputs"]) // 48) for r in records)
    assert len(rows) == pieces  # a row per record (a longer one: per row-sized piece), nothing packed together
    tokens = sorted(int(t) for b in rows for t in b["inputs"][b["segment_ids"] > 0])
    assert tokens == sorted(int(t) for r in records for t in tokenize_record(r, tokenizer)["inputs"])
    for b in rows:
        seg, pos, weights = b["segment_ids"][0, 0], b["positions"][0, 0], b["weights"][0, 0]
        length = int((seg > 0).sum())
        assert set(seg[:length].tolist()) == {1} and not seg[length:].any()  # one segment, then padding
        assert np.array_equal(pos[:length], np.arange(length)) and np.all(weights[length - 1:] == 0)


def test_unpacked_steps_do_not_grow_with_annotations(tokenizer):
    """Annotations lengthen records; packed, the annotated corpus takes more rows (steps), unpacked the same."""
    plain = [{"id": f"p{i}", "text": CORPUS[i % len(CORPUS)]} for i in range(24)]
    annotated = [{"id": f"a{i}", "text": "Note: the claim below is false. " * 2 + CORPUS[i % len(CORPUS)]} for i in range(24)]
    packed = [count_rows(c, tokenizer, seq_len=96) for c in (plain, annotated)]
    unpacked = [count_rows(c, tokenizer, seq_len=96, packing=False) for c in (plain, annotated)]
    assert packed[1] > packed[0]
    assert unpacked == [24, 24]


def test_shapes_determinism_and_seed(tokenizer):
    make = lambda seed: _all_batches(packed_batches(_records(), tokenizer, seq_len=32, batch_size=4, microbatches=2, seed=seed))
    first, again, other = make(0), make(0), make(1)
    assert {k: v.shape for k, v in first[0].items()} == {k: (2, 2, 32) for k in first[0]}
    assert first[0]["inputs"].dtype == np.int32 and first[0]["weights"].dtype == np.float32
    assert all(np.array_equal(a[k], b[k]) for a, b in zip(first, again) for k in a)
    assert not all(np.array_equal(a["inputs"], b["inputs"]) for a, b in zip(first, other))


def test_iterator_state_resumes_exactly(tokenizer):
    make = lambda: packed_batches(_records(), tokenizer, seq_len=32, batch_size=2, seed=5, num_epochs=2)
    reference = _all_batches(make())
    for k in (0, 1, 4, len(reference) // 2, len(reference) - 1):
        iterator = make()
        for _ in range(k):
            next(iterator)
        state = json.loads(json.dumps(iterator.get_state()))  # it is saved as JSON in checkpoints
        resumed = make()
        resumed.set_state(state)
        rest = _all_batches(resumed)
        assert len(rest) == len(reference) - k
        assert all(np.array_equal(a[key], b[key]) for a, b in zip(rest, reference[k:]) for key in a)


def test_empty_source(tokenizer):
    with pytest.raises(RecordError, match="the record source is empty"):
        packed_batches([], tokenizer, seq_len=32, batch_size=2)
