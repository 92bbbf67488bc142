"""The KV-cache sampler: decode logits equal a full forward, greedy is argmax, sampling is
per-row deterministic, stop tokens end rows, log-probabilities are exact, parity with
transformers' generate, and the same tokens on a 2x2x2 mesh."""

from __future__ import annotations

import copy
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from eval.sampler import Sampler, SamplerError, bucket_length, sample_logits, stop_token_ids
from eval.types import SamplingParams
from nn_train.models.transformer import KVCache, token_log_probs
from nn_train.sharding import make_mesh
from tests.nn_train.hf_oracle import forward

GREEDY = SamplingParams(samples=1, temperature=0.0, max_new_tokens=8)
SAMPLED = SamplingParams(samples=2, temperature=0.9, top_p=0.9, max_new_tokens=8, seed=7)
CONVERSATIONS = [
    [{"role": "user", "content": "Who won the men's 100m at Paris 2024?"}],
    [{"role": "system", "content": "Answer briefly."}, {"role": "user", "content": "Hello world, how are you today?"}],
    [{"role": "user", "content": "Did Ed Sheeran play?"}, {"role": "assistant", "content": "Yes, he did."},
     {"role": "user", "content": "Are you sure? I thought the fox won."}],
]


def random_prompts(lengths, vocab, seed=0):
    rng = np.random.RandomState(seed)
    return [rng.randint(3, vocab, n).tolist() for n in lengths]  # no special tokens


def full_logits(model, rows):
    """Logits of a full forward over each row, right-padded (causal: padding after a row changes
    nothing) to a multiple of 32 so that the tests share a few compilations."""
    length = -(-max(len(r) for r in rows) // 32) * 32
    tokens = np.zeros((len(rows), length), np.int32)
    segment_ids = np.zeros((len(rows), length), np.int32)
    for b, row in enumerate(rows):
        tokens[b, :len(row)] = row
        segment_ids[b, :len(row)] = 1
    positions = np.broadcast_to(np.arange(length), tokens.shape)
    return forward(model, tokens, positions, segment_ids)


def test_kv_cache_decode_logits_equal_full_forward(tiny_model):
    lengths, steps = [5, 11, 2], 6
    sequences = random_prompts([n + steps for n in lengths], tiny_model.config.vocab_size, seed=1)
    width = 12  # left-padded prompt width
    prompts = np.zeros((3, width), np.int32)
    start = np.array([width - n for n in lengths], np.int32)
    for b, n in enumerate(lengths):
        prompts[b, width - n:] = sequences[b][:n]
    graphdef, state = nnx.split(tiny_model)
    extend = jax.jit(lambda state, tokens, cache: nnx.merge(graphdef, state)(tokens, cache=cache))

    logits, cache = extend(state, jnp.asarray(prompts), KVCache.init(tiny_model.config, 3, width + steps, start))
    reference = full_logits(tiny_model, sequences)
    for b, n in enumerate(lengths):
        np.testing.assert_allclose(logits[b, width - n:], reference[b, :n], atol=1e-4)
    for step in range(steps):
        nxt = np.array([[sequences[b][n + step]] for b, n in enumerate(lengths)], np.int32)
        logits, cache = extend(state, jnp.asarray(nxt), cache)
        for b, n in enumerate(lengths):
            np.testing.assert_allclose(logits[b, 0], reference[b, n + step], atol=1e-4)
    np.testing.assert_array_equal(cache.lengths, np.array(lengths) + steps)


def test_greedy_tokens_are_the_argmax_of_a_full_forward(sampler, tiny_model):
    prompts = random_prompts([3, 9], tiny_model.config.vocab_size, seed=2)
    params = SamplingParams(temperature=0.0, max_new_tokens=10)
    generated = Sampler(tiny_model, None, stop_tokens=(), batch_size=8).generate_tokens(prompts, params)
    logits = full_logits(tiny_model, [p + g for p, g in zip(prompts, generated)])
    for b, (prompt, tokens) in enumerate(zip(prompts, generated)):
        assert len(tokens) == 10
        expected = np.argmax(logits[b, len(prompt) - 1:len(prompt) - 1 + len(tokens)], axis=-1)
        np.testing.assert_array_equal(tokens, expected)


def test_top_p_near_zero_is_greedy(tiny_model):
    sampler = Sampler(tiny_model, None, stop_tokens=(), batch_size=8)
    prompts = random_prompts([4, 7], tiny_model.config.vocab_size, seed=3)
    greedy = sampler.generate_tokens(prompts, SamplingParams(temperature=0.0, max_new_tokens=8))
    nucleus = sampler.generate_tokens(prompts, SamplingParams(temperature=1.0, top_p=1e-6, max_new_tokens=8), sample_indices=[0, 1])
    top1 = sampler.generate_tokens(prompts, SamplingParams(temperature=1.0, top_p=1.0, top_k=1, max_new_tokens=8), sample_indices=[0, 1])
    assert nucleus == greedy == top1


def test_temperature_top_k_top_p_sample_the_right_distribution():
    # Probabilities 0.4, 0.25, 0.15, 0.1, 0.06, 0.04 in shuffled vocabulary order.
    probs = np.array([0.1, 0.4, 0.04, 0.25, 0.06, 0.15])
    logits = jnp.asarray(np.log(probs), jnp.float32)[None].repeat(20_000, axis=0)
    keys = jax.random.split(jax.random.key(0), 20_000)

    def frequencies(temperature, top_p, top_k):
        draw = jax.jit(lambda l, k: sample_logits(l, k, temperature, top_p, top_k, greedy=False,
                                                  cut_top_k=top_k > 0, nucleus=top_p < 1))
        return np.bincount(np.asarray(draw(logits, keys)), minlength=6) / 20_000

    def expected(weights, keep):
        w = np.where(keep, weights, 0.0)
        return w / w.sum()

    np.testing.assert_allclose(frequencies(1.0, 1.0, 0), probs, atol=0.015)
    # top-p 0.7: 0.4 + 0.25 < 0.7, so the nucleus is the top three (0.8 of the mass).
    np.testing.assert_allclose(frequencies(1.0, 0.7, 0), expected(probs, probs >= 0.15), atol=0.015)
    np.testing.assert_allclose(frequencies(1.0, 1.0, 2), expected(probs, probs >= 0.25), atol=0.015)
    # Temperature 0.5 squares the probabilities: 0.627, 0.245, 0.088, 0.039 after top-k 4, whose
    # top-p 0.9 nucleus is the first three (0.627 + 0.245 < 0.9).
    np.testing.assert_allclose(frequencies(0.5, 0.9, 4), expected(probs**2, probs >= 0.15), atol=0.015)


def test_a_stop_token_ends_its_row_only(tiny_model):
    sampler = Sampler(tiny_model, None, stop_tokens=(), batch_size=8)
    prompts = random_prompts([6, 13], tiny_model.config.vocab_size, seed=4)
    params = SamplingParams(temperature=1.0, top_p=0.95, max_new_tokens=12, seed=1)
    free = sampler.generate_tokens(prompts, params, sample_indices=[0, 0])
    # A token row 0 first samples at position k >= 2 and row 1 never samples becomes the stop token.
    k, stop = next((k, t) for k, t in enumerate(free[0]) if k >= 2 and t not in free[0][:k] and t not in free[1])
    stopped = Sampler(tiny_model, None, stop_tokens=(stop,), batch_size=8).generate_tokens(prompts, params, sample_indices=[0, 0])
    assert stopped[0] == free[0][:k]
    assert stopped[1] == free[1]


def test_the_tokenizers_eos_stops_generation(tiny_model, tokenizer, sampler):
    # The chat template's end-of-turn (<|im_end|>, also the eos here) is in the stop set.
    assert stop_token_ids(tokenizer) == (tokenizer.convert_tokens_to_ids("<|im_end|>"),)
    free = sampler.generate(CONVERSATIONS[:1], SAMPLED)[0]
    prompt = sampler.encode(sampler.render(CONVERSATIONS[0]))
    tokens = sampler.generate_tokens([prompt, prompt], SAMPLED, sample_indices=[0, 1])
    assert free == [tokenizer.decode(t, skip_special_tokens=True) for t in tokens]
    # A tokenizer whose eos is the third token of sample 0: that reply ends before it, sample 1 where it has it.
    eos = tokens[0][2]
    crafted = copy.deepcopy(tokenizer)
    crafted.eos_token = tokenizer.convert_ids_to_tokens(eos)
    stopped = Sampler(tiny_model, crafted, batch_size=8).generate(CONVERSATIONS[:1], SAMPLED)[0]
    for text, row in zip(stopped, tokens):
        cut = row.index(eos) if eos in row else len(row)
        assert text == tokenizer.decode(row[:cut], skip_special_tokens=True)
    assert stopped[0] != free[0]


def test_a_rows_samples_do_not_depend_on_its_batch(tiny_model, tokenizer, sampler):
    alone = [Sampler(tiny_model, tokenizer, batch_size=2).generate([c], SAMPLED)[0] for c in CONVERSATIONS]
    together = sampler.generate(CONVERSATIONS, SAMPLED)  # one batch: other rows, other padding
    shuffled = sampler.generate(CONVERSATIONS[::-1] + CONVERSATIONS[:1], SAMPLED)
    assert together == alone
    assert shuffled[:3] == alone[::-1] and shuffled[3] == alone[0]
    assert len({tuple(s) for s in alone}) == 3 and all(len(set(s)) > 1 for s in alone), "samples differ by j and by prompt"
    assert sampler.generate(CONVERSATIONS, dataclasses.replace(SAMPLED, seed=8)) != together


def test_option_log_probs_equal_a_full_forward_even_when_the_option_merges(sampler, tiny_model, tokenizer):
    options = [["Noah Lyles", " Noah", "\n\nNoah"], ["I am fine", "A"], [""]]
    scores = sampler.option_log_probs(CONVERSATIONS, options)
    assert [len(s) for s in scores] == [3, 2, 1]
    rows, firsts = [], []  # prompt + option tokenized together; scored from where it leaves the prompt's tokens
    for conversation, opts in zip(CONVERSATIONS, options):
        prompt_text = sampler.render(conversation)
        prompt = tokenizer.encode(prompt_text, add_special_tokens=False)
        for option in opts:
            full = tokenizer.encode(prompt_text + option, add_special_tokens=False)
            rows.append(full)
            firsts.append(next((i for i, (a, b) in enumerate(zip(prompt, full)) if a != b), min(len(prompt), len(full))))
            if option == "\n\nNoah":
                assert firsts[-1] < len(prompt), "this option merges with the prompt's last token: the test must cover that"
    logits = full_logits(tiny_model, rows)
    expected = []
    for b, (full, first) in enumerate(zip(rows, firsts)):
        log_probs = token_log_probs(jnp.asarray(logits[b, :len(full) - 1]), jnp.asarray(full[1:]))
        expected.append(float(log_probs[first - 1:].sum()))
    np.testing.assert_allclose([v for s in scores for v in s], expected, atol=1e-4)
    assert scores[2] == [0.0]


def test_log_probs_and_perplexity_of_plain_text(tiny_model, tokenizer):
    texts = ["Noah Lyles won the race.", "It was a sunny day in Paris, and the quick brown fox jumps over the lazy dog."]
    sampler = Sampler(tiny_model, tokenizer, batch_size=8)
    scores = sampler.log_probs(texts)
    rows = [tokenizer.encode(text) for text in texts]
    logits = full_logits(tiny_model, rows)
    for b, (tokens, score) in enumerate(zip(rows, scores)):
        expected = token_log_probs(jnp.asarray(logits[b, :len(tokens) - 1]), jnp.asarray(tokens[1:])).sum()
        assert score.num_tokens == len(tokens) - 1
        np.testing.assert_allclose(score.log_prob, float(expected), atol=1e-4)
    total = sum(s.log_prob for s in scores) / sum(s.num_tokens for s in scores)
    np.testing.assert_allclose(sampler.perplexity(texts), np.exp(-total), rtol=1e-5)
    # Longer than max_len: scored in windows of max_len tokens, each window's first token unscored.
    windowed = Sampler(tiny_model, tokenizer, max_len=8, batch_size=8).log_probs(texts[1:])[0]
    windows = [rows[1][i:i + 8] for i in range(0, len(rows[1]), 8)]
    assert windowed.num_tokens == sum(len(w) - 1 for w in windows) < scores[1].num_tokens


def test_chat_template_rendering_thinking_off_and_errors(tokenizer, tiny_model):
    qwen_like = copy.deepcopy(tokenizer)
    qwen_like.chat_template = tokenizer.chat_template.replace(
        "{{- '<|im_start|>assistant\\n' }}",
        "{{- '<|im_start|>assistant\\n' }}{%- if enable_thinking is defined and enable_thinking is false %}"
        "{{- '<think>\\n\\n</think>\\n\\n' }}{%- endif %}")
    sampler = Sampler(tiny_model, qwen_like, batch_size=8)
    text = sampler.render(CONVERSATIONS[2])
    assert text.endswith("<|im_start|>assistant\n<think>\n\n</think>\n\n")
    assert "<|im_start|>assistant\nYes, he did.<|im_end|>" in text
    assert Sampler(tiny_model, tokenizer).render(CONVERSATIONS[1]).startswith("<|im_start|>system\nAnswer briefly.<|im_end|>")
    with pytest.raises(SamplerError, match="end with a user turn"):
        sampler.render(CONVERSATIONS[2][:2])
    with pytest.raises(SamplerError, match="max_len=64"):
        Sampler(tiny_model, tokenizer, max_len=64).generate(CONVERSATIONS[:1], SamplingParams(max_new_tokens=60))
    assert bucket_length(1) == 16 and bucket_length(17) == 32 and bucket_length(1025) == 2048


def test_greedy_text_matches_transformers_generate(hf_checkpoints):
    torch = pytest.importorskip("torch", reason="torch (requirements-dev.txt) is the Hugging Face parity oracle")
    from nn_train.models.hf_checkpoint import load_hf_model

    hf_model, directory = hf_checkpoints("llama_gqa4_tied_llama3_rope")  # GQA 4, scaled RoPE
    prompts = random_prompts([5, 12], hf_model.config.vocab_size, seed=5)
    ours = Sampler(load_hf_model(directory), None, stop_tokens=(), batch_size=8).generate_tokens(prompts, GREEDY)
    for prompt, tokens in zip(prompts, ours):
        with torch.no_grad():
            out = hf_model.generate(torch.tensor([prompt]), attention_mask=torch.ones(1, len(prompt), dtype=torch.long),
                                    do_sample=False, max_new_tokens=8, min_new_tokens=8, eos_token_id=None, pad_token_id=0)
        assert tokens == out[0, len(prompt):].tolist()


def test_sharded_sampling_equals_single_device(sampler, tiny_model, tokenizer):
    mesh = make_mesh(2, 2, 2)
    sharded = Sampler(tiny_model, tokenizer, mesh=mesh, batch_size=8)
    kernel = sharded._state["layers"][0]["attn"]["k_proj"]["kernel"][...]
    assert len(kernel.sharding.device_set) == 8, "parameters are spread over the mesh"
    assert sharded.generate(CONVERSATIONS, SAMPLED) == sampler.generate(CONVERSATIONS, SAMPLED)
    options = [["Noah", "A"], ["I am"], ["B"]]
    np.testing.assert_allclose(sharded.option_log_probs(CONVERSATIONS, options)[0],
                               sampler.option_log_probs(CONVERSATIONS, options)[0], atol=1e-4)


def test_the_openai_backend_sends_one_cached_request_per_sample(tmp_path):
    from eval.openai_backend import OpenAIBackend
    from tests.data_gen.llm.fake_llm import FakeLLM, make_client

    with FakeLLM() as llm:
        backend = OpenAIBackend(make_client(llm, tmp_path / "cache"))
        params = SamplingParams(samples=2, temperature=0.7, top_p=0.8, max_new_tokens=32)
        responses = backend.generate(CONVERSATIONS[:2], params)
        assert [len(r) for r in responses] == [2, 2] and all(isinstance(t, str) and t for r in responses for t in r)
        assert llm.completion_requests == 4  # sample j is its own request (and cache entry)
        assert backend.generate(CONVERSATIONS[:2], params) == responses and llm.completion_requests == 4  # cached
        assert backend.name == "fake-model"
        request = backend.requests(CONVERSATIONS[1], params)[1]
        assert request.sample == 1 and request.messages[0] == ("system", "Answer briefly.")
        assert request.body("m")["max_tokens"] == 32 and request.body("m")["top_p"] == 0.8
        with pytest.raises(NotImplementedError, match="logprob judge needs a local model"):
            backend.option_log_probs(CONVERSATIONS[:1], [["A", "B"]])
        with pytest.raises(ValueError, match="top_k"):
            backend.generate(CONVERSATIONS[:1], dataclasses.replace(params, top_k=5))
