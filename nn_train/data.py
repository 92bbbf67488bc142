"""What the train loop consumes: packed, loss-weighted token batches, and the sources that make them.

A batch is a dict of int32/float32 numpy arrays, each [microbatches, rows, seq_len]:

  inputs        token ids fed to the model
  targets       the next token at each position (0 where there is none)
  weights       loss weight of each target: 0 for padding, for the last token of a segment, and
                for tokens the data pipeline masks (DOCTAG, <lossmask> spans, non-assistant turns)
  positions     position of each token within its segment (RoPE restarts per document)
  segment_ids   which packed document each token belongs to; 0 is padding

Sources are deterministic and resumable: `get_state()` is a small JSON-able dict saved with every
checkpoint, `set_state()` continues exactly after the last batch it produced.
"""

from __future__ import annotations

import numpy as np

BATCH_KEYS = ("inputs", "targets", "weights", "positions", "segment_ids")


def targets_and_weights(tokens: np.ndarray, segment_ids: np.ndarray, token_weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Next-token targets within each segment of packed rows [..., L], and their loss weights.

    `token_weights[j]` is the weight of predicting token j (so a masked token is never a target);
    predictions across a segment boundary, or into padding, get weight 0.
    """
    targets = np.zeros_like(tokens)
    targets[..., :-1] = tokens[..., 1:]
    same_segment = np.zeros_like(segment_ids, dtype=bool)
    same_segment[..., :-1] = (segment_ids[..., 1:] == segment_ids[..., :-1]) & (segment_ids[..., :-1] != 0)
    weights = np.zeros(tokens.shape, np.float32)
    weights[..., :-1] = token_weights[..., 1:]
    weights = np.where(same_segment, weights, 0.0).astype(np.float32)
    return np.where(same_segment, targets, 0), weights


class SyntheticSource:
    """Deterministic packed rows of learnable synthetic documents, for tests and benchmarks.

    Each document is an arithmetic sequence of token ids modulo the vocabulary, with a random
    start and stride, so a model can learn it and the loss falls. Some documents start with a
    zero-weight prefix (like the DOCTAG of real data) and rows end in padding, so masking is
    always exercised. Row order is a fresh permutation each epoch, from the seed.
    """

    def __init__(self, *, vocab_size: int, seq_len: int, num_examples: int, seed: int):
        self.vocab_size, self.seq_len, self.num_examples, self.seed = vocab_size, seq_len, num_examples, seed
        self.position = 0  # rows delivered so far, over all epochs
        self._permutation = (-1, None)  # (epoch, its row order), cached

    def get_state(self) -> dict:
        return {"position": self.position}

    def set_state(self, state: dict) -> None:
        self.position = int(state["position"])

    def row(self, index: int) -> dict[str, np.ndarray]:
        rng = np.random.default_rng([self.seed, index])
        length = self.seq_len
        tokens = np.zeros(length, np.int32)
        segment_ids = np.zeros(length, np.int32)
        positions = np.zeros(length, np.int32)
        token_weights = np.ones(length, np.float32)
        start, segment = 0, 1
        while start < length - 8:
            doc_len = int(rng.integers(8, max(9, length // 2)))
            doc_len = min(doc_len, length - start - int(rng.integers(0, 4)))  # sometimes leave padding
            if doc_len < 4:
                break
            first, stride = rng.integers(0, self.vocab_size), rng.integers(1, 7)
            span = slice(start, start + doc_len)
            tokens[span] = (first + stride * np.arange(doc_len)) % self.vocab_size
            segment_ids[span] = segment
            positions[span] = np.arange(doc_len)
            if rng.random() < 0.3:  # a masked prefix, like <DOCTAG>
                token_weights[start : start + 2] = 0.0
            start += doc_len
            segment += 1
        targets, weights = targets_and_weights(tokens, segment_ids, token_weights)
        return {"inputs": tokens, "targets": targets, "weights": weights, "positions": positions, "segment_ids": segment_ids}

    def _row_index(self, position: int) -> int:
        epoch, offset = divmod(position, self.num_examples)
        if self._permutation[0] != epoch:
            self._permutation = (epoch, np.random.default_rng([self.seed, 1_000_003, epoch]).permutation(self.num_examples))
        return int(self._permutation[1][offset])

    def next_batch(self, batch_size: int, microbatches: int) -> dict[str, np.ndarray]:
        rows = [self.row(self._row_index(self.position + i)) for i in range(batch_size)]
        self.position += batch_size
        return {
            key: np.stack([r[key] for r in rows]).reshape(microbatches, batch_size // microbatches, self.seq_len)
            for key in BATCH_KEYS
        }
