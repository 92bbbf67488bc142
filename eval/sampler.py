"""The JAX sampler: batched KV-cache generation and log-probability scoring of our Transformer.

    sampler = Sampler(model, tokenizer, mesh=mesh, name="run@step_40")
    responses = sampler.generate(conversations, SamplingParams(samples=5))      # [i][j] strings
    scores = sampler.option_log_probs(conversations, [["A", "B"], ...])          # [i][k] floats
    ppl = sampler.perplexity(texts)                                              # held-out text

It implements eval.types.GenerationBackend. Conversations are rendered with the tokenizer's chat
template (generation prompt added, `enable_thinking=False` when the template knows it).

Batching and padding. Every (conversation, sample) pair is one row. Rows are sorted by prompt
length and cut into batches of at most `batch_size`; the batch is padded to a power of two
rows and its prompts are LEFT-padded to a bucketed length (powers of two, then multiples of
1024), so a whole evaluation compiles a handful of shapes. Left padding lets every row write its
next token at the same cache slot (nn_train.models.transformer.KVCache); padding slots are masked
out and positions count from each row's first real token, so padding changes nothing a row sees.

Seeding. Row (prompt, j) samples token t with the key
    fold_in(fold_in(fold_in(key(params.seed), h), j), t)
where h is a 32-bit hash (sha256) of the row's prompt token ids. The key depends on the prompt's
content, the sample index and the token index only — not on the conversation's index in the
request, its batch, its batch companions or its padding — so a response is a function of
(seed, conversation, j) alone (up to float rounding of batched matmuls, which only matters at
exact ties). Identical conversations get identical samples. Greedy decoding (temperature 0)
ignores j and computes each distinct prompt once.

Stopping. A row stops at the tokenizer's eos, the chat template's end-of-turn token (found by
rendering a reply) or the model config's eos; the stop token is not part of the response, and a
finished row keeps decoding padding until every row is done or max_new_tokens is reached.

Decoding loop. One jitted pure function of the split model state (nnx.split, merge inside: on
tiny models about twice as fast per call as nnx.jit) runs the prefill and then a `lax.while_loop`
of decode steps that exits as soon as every row has stopped. The cache is created inside it and
carried by the loop, so XLA updates it in place with nothing to donate. Measured on the 2-core
CPU against a Python loop over a jitted step with the cache donated (qwen3_tiny / qwen3_small,
8 rows, 64-token prompts, 64 new tokens, greedy): 23 vs 41 ms and 230 vs 260 ms — the while loop
wins, and on an accelerator it leaves no per-token host round trip. The jitted functions are
module-level with the graph definition static, so Samplers of one architecture share compilations.

Sampling never sorts the vocabulary (XLA's CPU sort of [8, 151936] takes ~0.5 s): top-k and
top-p are logit thresholds found by bisection and the draw is an inverse CDF (`sample_logits`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import math
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.sharding import Mesh, NamedSharding

from eval.types import Conversation, SamplingParams
from nn_train.models.transformer import KVCache, Transformer, token_log_probs
from nn_train.sharding import data_parallel_size, logical_to_spec, state_shardings

# Cache slots beyond the prompt are rounded up to this, so nearby max_new_tokens share a compile.
NEW_TOKENS_QUANTUM = 32
# End-of-turn tokens of common chat formats, used when rendering a reply does not reveal one.
_END_OF_TURN_NAMES = ("<|im_end|>", "<|eot_id|>", "<end_of_turn>", "<|end|>")


class SamplerError(ValueError):
    """A request the sampler cannot serve (prompt too long, no chat template); one line."""


@dataclasses.dataclass(frozen=True)
class TextScore:
    """The log-probability of a text under the model: summed over `num_tokens` scored tokens."""

    log_prob: float
    num_tokens: int


def bucket_length(n: int, minimum: int = 16) -> int:
    """Padded length for n tokens: the next power of two (≥ minimum), then multiples of 1024."""
    if n <= 1024:
        return max(minimum, 1 << max(n - 1, 0).bit_length())
    return -(-n // 1024) * 1024


def prompt_hash(tokens: Sequence[int]) -> int:
    """A stable 32-bit hash of token ids (the per-row seed material)."""
    digest = hashlib.sha256(np.asarray(tokens, dtype=np.int64).tobytes()).digest()
    return int.from_bytes(digest[:4], "little")


def row_keys(seed: jax.Array, hashes: jax.Array, sample_indices: jax.Array) -> jax.Array:
    """[B] PRNG keys: fold_in(fold_in(key(seed), hash), sample index) per row."""
    base = jax.random.key(seed)
    return jax.vmap(lambda h, j: jax.random.fold_in(jax.random.fold_in(base, h), j))(hashes, sample_indices)


def sample_logits(logits: jax.Array, keys: jax.Array | None, temperature: jax.Array, top_p: jax.Array, top_k: jax.Array,
                  *, greedy: bool, cut_top_k: bool = False, nucleus: bool = False) -> jax.Array:
    """Next tokens [B] from logits [B, V]: argmax when `greedy`; else temperature, then top-k
    (`cut_top_k`), then top-p (`nucleus`) over the renormalised top-k distribution (the order
    transformers and vLLM use), then one draw per row with that row's key.

    No sort of the vocabulary: XLA's CPU sort of [8, 151936] takes ~0.5 s per step. Each cut is a
    threshold on the logit found by bisection instead (`_largest_threshold`), and the draw is by
    inverse CDF with one uniform per row rather than a Gumbel per vocabulary entry.
    """
    if greedy:
        return jnp.argmax(logits, axis=-1).astype(jnp.int32)
    logits = logits.astype(jnp.float32) / temperature
    if cut_top_k:  # the k highest logits (ties at the k-th are all kept)
        kth = _largest_threshold(logits, lambda kept: jnp.sum(kept, axis=-1, keepdims=True) >= top_k)
        logits = jnp.where(logits >= kth, logits, -jnp.inf)
    probs = jax.nn.softmax(logits, axis=-1)
    if nucleus:  # the smallest set of highest logits holding at least top_p of the mass
        cut = _largest_threshold(logits, lambda kept: jnp.sum(jnp.where(kept, probs, 0.0), axis=-1, keepdims=True) >= top_p)
        probs = jnp.where(logits >= cut, probs, 0.0)
    cdf = jnp.cumsum(probs, axis=-1)
    u = jax.vmap(lambda key: jax.random.uniform(key, ()))(keys)[:, None] * cdf[:, -1:]
    token = jnp.sum(cdf <= u, axis=-1)  # the first entry whose cdf exceeds u: a token with p > 0
    last_kept = logits.shape[-1] - 1 - jnp.argmax((probs > 0)[:, ::-1], axis=-1)  # in case u rounds up to the total
    return jnp.minimum(token, last_kept).astype(jnp.int32)


def _largest_threshold(logits: jax.Array, enough) -> jax.Array:
    """[B, 1]: the largest t with enough(logits >= t) for each row, by bisection between the
    smallest finite logit (keeps everything) and above the largest (keeps nothing).

    The search starts no lower than max - 128: below that a token's probability underflows to
    exactly 0 in float32, so it can never be drawn whatever the cut. Over that span 32 halvings
    reach adjacent floats, so {logits >= t} is exactly the sort-based set up to ties.
    """
    top = jnp.max(logits, axis=-1, keepdims=True)
    low = jnp.min(jnp.where(jnp.isfinite(logits), logits, jnp.inf), axis=-1, keepdims=True)
    low = jnp.maximum(low, top - 128.0)
    high = top + 1.0

    def halve(_, bounds):
        low, high = bounds
        mid = low + (high - low) / 2
        ok = enough(logits >= mid)
        return jnp.where(ok, mid, low), jnp.where(ok, high, mid)

    return jax.lax.fori_loop(0, 32, halve, (low, high))[0]


def _template_accepts(tokenizer: Any, variable: str) -> bool:
    template = getattr(tokenizer, "chat_template", None)
    if isinstance(template, dict):
        template = " ".join(template.values())
    return bool(template) and variable in template


def stop_token_ids(tokenizer: Any, config_eos: int | Sequence[int] | None = None) -> tuple[int, ...]:
    """The tokens that end a reply: the tokenizer's eos, the chat template's end-of-turn token
    and the model config's eos (Qwen3 base models end text with <|endoftext|> but turns with <|im_end|>)."""
    ids: set[int] = set()
    if tokenizer is not None:
        if tokenizer.eos_token_id is not None:
            ids.add(int(tokenizer.eos_token_id))
        end_of_turn = _end_of_turn_id(tokenizer)
        if end_of_turn is not None:
            ids.add(end_of_turn)
    if config_eos is not None:
        ids.update(int(i) for i in ([config_eos] if isinstance(config_eos, int) else config_eos))
    return tuple(sorted(ids))


def _end_of_turn_id(tokenizer: Any) -> int | None:
    """The special token the chat template puts right after an assistant reply, if any."""
    special = set(tokenizer.all_special_ids) | set(tokenizer.get_added_vocab().values())
    if getattr(tokenizer, "chat_template", None):
        marker = "Zq7xMARKER"
        try:
            text = tokenizer.apply_chat_template(
                [{"role": "user", "content": "hi"}, {"role": "assistant", "content": marker}], tokenize=False)
        except Exception:  # templates may reject the probe (e.g. require a system turn); fall back to names
            text = ""
        if marker in text:
            after = tokenizer.encode(text.split(marker, 1)[1], add_special_tokens=False)
            if after and after[0] in special:
                return int(after[0])
    vocab = tokenizer.get_vocab()
    for name in _END_OF_TURN_NAMES:
        if name in vocab and vocab[name] in special:
            return int(vocab[name])
    return None


class Sampler:
    """GenerationBackend over a JAX Transformer: batched KV-cache sampling and log-prob scoring.

    `tokenizer` may be None for the token-level methods (`generate_tokens`, `score_tokens`).
    `mesh`: place the model on it (parameters by their logical axes) and split rows over
    (data, fsdp, expert); None runs where the model's arrays are. `max_len`: the longest prompt plus
    new tokens allowed (default: the model's max_position_embeddings). `stop_tokens` overrides
    the stop set derived from the tokenizer (an empty tuple never stops early).
    """

    def __init__(
        self,
        model: Transformer,
        tokenizer: Any = None,
        *,
        mesh: Mesh | None = None,
        name: str = "model",
        max_len: int | None = None,
        batch_size: int = 64,
        stop_tokens: Sequence[int] | None = None,
    ):
        self.name = name
        self.config = model.config
        self.tokenizer = tokenizer
        self.mesh = mesh
        self.max_len = max_len or self.config.max_position_embeddings
        # Rows split over (data, fsdp, expert); the batch is padded to a multiple of that.
        self._data_parallel = data_parallel_size(mesh)
        self.batch_size = max(batch_size, self._data_parallel)
        model = nnx.view(model, deterministic=True, raise_if_not_found=False)  # no LoRA dropout at eval
        self._graphdef, state = nnx.split(model)
        if mesh is not None:
            state = jax.device_put(state, state_shardings(state, mesh))
        self._state = state
        if stop_tokens is None:
            stop_tokens = stop_token_ids(tokenizer, self.config.eos_token_id)
        self.stop_tokens = tuple(int(t) for t in stop_tokens if 0 <= int(t) < self.config.vocab_size)
        pad = getattr(tokenizer, "pad_token_id", None) if tokenizer is not None else None
        self.pad_id = int(pad if pad is not None else (self.stop_tokens[0] if self.stop_tokens else 0))
        self._thinking_flag = tokenizer is not None and _template_accepts(tokenizer, "enable_thinking")

    # -----------------------------------------------------------------------------------------
    # Text in, text out

    def render(self, conversation: Conversation) -> str:
        """The prompt text: the conversation through the chat template, ready for the assistant's reply."""
        tokenizer = self._need_tokenizer()
        if not getattr(tokenizer, "chat_template", None):
            raise SamplerError("the tokenizer has no chat_template; evaluate a tokenizer with a chat template (or set one)")
        messages = [dict(m) for m in conversation]
        if not messages or messages[-1].get("role") != "user":
            raise SamplerError(f"a conversation must end with a user turn; got roles {[m.get('role') for m in messages]}")
        extra = {"enable_thinking": False} if self._thinking_flag else {}
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True, **extra)

    def encode(self, text: str) -> list[int]:
        # The template already wrote any BOS it wants as text; don't add another.
        return list(self._need_tokenizer().encode(text, add_special_tokens=False))

    def generate(self, conversations: Sequence[Conversation], params: SamplingParams) -> list[list[str]]:
        """responses[i][j]: sample j of the reply to conversations[i] (see the module doc for seeding)."""
        prompts = [self.encode(self.render(c)) for c in conversations]
        rows = [(p, j) for p in prompts for j in range(params.samples)]
        outputs = self.generate_tokens([p for p, _ in rows], params, sample_indices=[j for _, j in rows])
        texts = [self.tokenizer.decode(tokens, skip_special_tokens=True) for tokens in outputs]
        return [texts[i * params.samples:(i + 1) * params.samples] for i in range(len(prompts))]

    def option_log_probs(self, conversations: Sequence[Conversation], options: Sequence[Sequence[str]]) -> list[list[float]]:
        """log P(reply starts with option) per option: the option's tokens summed, in one forward pass
        per batch of (conversation, option) rows.

        Prompt and option are tokenized together and only the tokens after their common prefix
        with the prompt alone are scored, so an option whose first token merges with the end of
        the prompt (a BPE merge across the boundary) is still scored as the model would see it.
        The end-of-turn token is not included: "A" scores every reply that starts with "A".
        """
        if len(options) != len(conversations):
            raise SamplerError(f"{len(conversations)} conversations but {len(options)} option lists")
        rows, shape = [], []
        for conversation, opts in zip(conversations, options):
            prompt_text = self.render(conversation)
            prompt = self.encode(prompt_text)
            shape.append(len(opts))
            for option in opts:
                full = self.encode(prompt_text + option)
                common = 0
                while common < min(len(prompt), len(full)) and prompt[common] == full[common]:
                    common += 1
                rows.append((full, max(common, 1)))
        scores = self.score_tokens(rows)
        out, k = [], 0
        for n in shape:
            out.append([s.log_prob for s in scores[k:k + n]])
            k += n
        return out

    def log_probs(self, texts: Sequence[str]) -> list[TextScore]:
        """Total log-probability of each text (tokenized as plain text, with the tokenizer's BOS if it
        adds one); texts longer than max_len are scored in consecutive windows of max_len tokens."""
        tokenizer = self._need_tokenizer()
        rows, owner = [], []
        for i, text in enumerate(texts):
            tokens = list(tokenizer.encode(text))
            for begin in range(0, max(len(tokens), 1), self.max_len):
                rows.append((tokens[begin:begin + self.max_len], 1))
                owner.append(i)
        totals = [[0.0, 0] for _ in texts]
        for i, score in zip(owner, self.score_tokens(rows)):
            totals[i][0] += score.log_prob
            totals[i][1] += score.num_tokens
        return [TextScore(lp, n) for lp, n in totals]

    def perplexity(self, texts: Sequence[str]) -> float:
        """exp(mean negative log-likelihood per token) over all texts (the capability check)."""
        scores = self.log_probs(texts)
        tokens = sum(s.num_tokens for s in scores)
        if tokens == 0:
            raise SamplerError("no scorable tokens: every text is at most one token long")
        return math.exp(-sum(s.log_prob for s in scores) / tokens)

    # -----------------------------------------------------------------------------------------
    # Tokens in, tokens out

    def generate_tokens(self, prompts: Sequence[Sequence[int]], params: SamplingParams,
                        *, sample_indices: Sequence[int] | None = None) -> list[list[int]]:
        """The sampled continuation of each prompt (stop token excluded). Row r uses sample index
        sample_indices[r] (default 0) for its key; identical (prompt, index) rows are computed once."""
        if params.max_new_tokens < 1:
            raise SamplerError(f"max_new_tokens must be at least 1, got {params.max_new_tokens}")
        if params.temperature < 0 or not 0 < params.top_p <= 1 or params.top_k < 0:
            raise SamplerError(f"need temperature >= 0, 0 < top_p <= 1, top_k >= 0; got {params}")
        greedy = params.temperature == 0
        indices = [0] * len(prompts) if sample_indices is None or greedy else list(sample_indices)
        limit = self.max_len - params.max_new_tokens
        for r, prompt in enumerate(prompts):
            if not 1 <= len(prompt) <= limit:
                raise SamplerError(
                    f"prompt {r} has {len(prompt)} tokens; with max_new_tokens={params.max_new_tokens} the sampler "
                    f"takes 1 to {limit} (max_len={self.max_len})")
        unique: dict[tuple, int] = {}
        for prompt, j in zip(prompts, indices):
            unique.setdefault((tuple(prompt), j), len(unique))
        keys = list(unique)
        results: list[list[int]] = [[] for _ in keys]
        order = sorted(range(len(keys)), key=lambda u: -len(keys[u][0]))  # similar lengths share a batch
        for begin in range(0, len(order), self.batch_size):
            chunk = order[begin:begin + self.batch_size]
            for u, tokens in zip(chunk, self._generate_batch([keys[u] for u in chunk], params)):
                results[u] = tokens
        return [results[unique[(tuple(p), j)]] for p, j in zip(prompts, indices)]

    def score_tokens(self, rows: Sequence[tuple[Sequence[int], int]]) -> list[TextScore]:
        """Sum of log p(tokens[t] | tokens[:t]) over t >= first, for each (tokens, first) row."""
        for r, (tokens, first) in enumerate(rows):
            if len(tokens) > self.max_len:
                raise SamplerError(f"row {r} has {len(tokens)} tokens; the sampler scores at most max_len={self.max_len}")
            if first < 1:
                raise SamplerError(f"row {r}: the first token has no context and cannot be scored (first={first})")
        out: list[TextScore | None] = [None] * len(rows)
        order = sorted(range(len(rows)), key=lambda r: -len(rows[r][0]))
        for begin in range(0, len(order), self.batch_size):
            chunk = order[begin:begin + self.batch_size]
            length = bucket_length(max(len(rows[r][0]) for r in chunk))
            batch = self._batch_rows(len(chunk))
            tokens = np.full((batch, length), self.pad_id, np.int32)
            segment_ids = np.zeros((batch, length), np.int32)
            weights = np.zeros((batch, length), np.float32)  # weights[b, t]: score token t
            for b, r in enumerate(chunk):
                row, first = rows[r]
                tokens[b, :len(row)] = row
                segment_ids[b, :len(row)] = 1
                weights[b, first:len(row)] = 1.0
            with self._mesh_scope():
                sums = _score(self._state, *self._place(tokens, segment_ids, weights), graphdef=self._graphdef)
            sums = np.asarray(jax.device_get(sums))
            for b, r in enumerate(chunk):
                out[r] = TextScore(float(sums[b]), int(weights[b].sum()))
        return out

    # -----------------------------------------------------------------------------------------
    # Internals

    def _need_tokenizer(self):
        if self.tokenizer is None:
            raise SamplerError("this sampler was built without a tokenizer; text methods need one")
        return self.tokenizer

    def _batch_rows(self, n: int) -> int:
        """Rows to compile for n real rows: a power of two, a multiple of the data-parallel size."""
        rows = max(1 << max(n - 1, 0).bit_length(), self._data_parallel)
        return -(-rows // self._data_parallel) * self._data_parallel

    def _mesh_scope(self):
        return jax.set_mesh(self.mesh) if self.mesh is not None else contextlib.nullcontext()

    def _place(self, *arrays: np.ndarray) -> tuple[jax.Array, ...]:
        """Host arrays [B, ...] onto the mesh with rows split over (data, fsdp, expert)."""
        if self.mesh is None:
            return tuple(jnp.asarray(a) for a in arrays)
        placed = []
        for a in arrays:
            spec = logical_to_spec(("act_batch",) + (None,) * (a.ndim - 1), a.shape, self.mesh)
            placed.append(jax.device_put(a, NamedSharding(self.mesh, spec)))
        return tuple(placed)

    def _generate_batch(self, rows: Sequence[tuple[tuple[int, ...], int]], params: SamplingParams) -> list[list[int]]:
        n = len(rows)
        batch = self._batch_rows(n)
        length = bucket_length(max(len(p) for p, _ in rows))
        new_slots = -(-params.max_new_tokens // NEW_TOKENS_QUANTUM) * NEW_TOKENS_QUANTUM
        tokens = np.full((batch, length), self.pad_id, np.int32)
        start = np.full((batch,), length - 1, np.int32)  # filler rows: one pad token
        hashes = np.zeros((batch,), np.uint32)
        samples = np.zeros((batch,), np.int32)
        for b, (prompt, j) in enumerate(rows):
            tokens[b, length - len(prompt):] = prompt
            start[b] = length - len(prompt)
            hashes[b] = prompt_hash(prompt)
            samples[b] = j
        greedy = params.temperature == 0
        knobs = (jnp.uint32(params.seed % 2**32), jnp.float32(params.temperature or 1.0), jnp.float32(params.top_p),
                 jnp.int32(params.top_k))
        # Padded with -1 (never sampled) to a fixed size, so models with 1 to 8 stop tokens share a compile.
        stop = np.full((max(8, len(self.stop_tokens)),), -1, np.int32)
        stop[:len(self.stop_tokens)] = self.stop_tokens
        stop = jnp.asarray(stop)
        with self._mesh_scope():
            out = _generate(self._state, *self._place(tokens, start, hashes, samples), knobs, stop,
                            jnp.int32(params.max_new_tokens), graphdef=self._graphdef, pad_id=self.pad_id,
                            cache_len=length + new_slots, greedy=greedy, cut_top_k=not greedy and params.top_k > 0,
                            nucleus=not greedy and params.top_p < 1)
            out = np.asarray(jax.device_get(out))[:n, :params.max_new_tokens]
        results = []
        for row in out:
            stops = np.flatnonzero(np.isin(row, self.stop_tokens)) if self.stop_tokens else []
            results.append(row[: stops[0] if len(stops) else len(row)].tolist())
        return results


# The jitted pure functions of the model state (nnx.merge inside), at module level with the graph
# definition as a static argument: every Sampler of the same architecture shares their compilations.


@functools.partial(jax.jit, static_argnames=("graphdef", "pad_id", "cache_len", "greedy", "cut_top_k", "nucleus"))
def _generate(state, tokens, start, hashes, samples, knobs, stop, max_new, *, graphdef, pad_id, cache_len, greedy, cut_top_k, nucleus):
    """Prefill, then decode steps in a while loop until every row stopped or max_new tokens.
    Returns out [B, cache_len - T]: row b's new tokens, padding after its stop token."""
    model = nnx.merge(graphdef, state)
    seed, temperature, top_p, top_k = knobs
    keys = None if greedy else row_keys(seed, hashes, samples)

    def next_token(logits, step):
        step_keys = None if greedy else jax.vmap(lambda key: jax.random.fold_in(key, step))(keys)
        return sample_logits(logits, step_keys, temperature, top_p, top_k, greedy=greedy, cut_top_k=cut_top_k, nucleus=nucleus)

    batch = tokens.shape[0]
    logits, cache = model.extend(tokens, KVCache.init(model.config, batch, cache_len, start), last_only=True)
    token = next_token(logits[:, 0], 0)
    out = jnp.full((batch, cache_len - tokens.shape[1]), pad_id, jnp.int32).at[:, 0].set(token)

    def unfinished(carry):
        _, _, done, _, step = carry
        return (step < max_new) & ~jnp.all(done)

    def decode(carry):
        cache, token, done, out, step = carry
        logits, cache = model.extend(token[:, None], cache)
        token = jnp.where(done, pad_id, next_token(logits[:, 0], step))  # a finished row keeps padding
        out = jax.lax.dynamic_update_slice(out, token[:, None], (0, step))
        return cache, token, done | jnp.isin(token, stop), out, step + 1

    carry = (cache, token, jnp.isin(token, stop), out, jnp.ones((), jnp.int32))
    return jax.lax.while_loop(unfinished, decode, carry)[3]


@functools.partial(jax.jit, static_argnames=("graphdef",))
def _score(state, tokens, segment_ids, weights, *, graphdef):
    """[B]: the sum over t of weights[b, t] * log p(tokens[b, t] | tokens[b, :t]), one full forward."""
    model = nnx.merge(graphdef, state)
    positions = jnp.broadcast_to(jnp.arange(tokens.shape[1], dtype=jnp.int32), tokens.shape)
    logits = model(tokens, positions=positions, segment_ids=segment_ids)
    log_probs = token_log_probs(logits[:, :-1], tokens[:, 1:])  # [B, T-1]: token t+1 given ≤ t
    return (log_probs * weights[:, 1:]).sum(axis=-1)
