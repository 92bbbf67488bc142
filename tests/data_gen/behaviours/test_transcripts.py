"""Behaviour transcripts: the four conditions, matched corpora, assistant-only loss, TFDS and the build, the LLM backend."""

from __future__ import annotations

import collections
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from data_gen.behaviours import list_behaviour_ids, load_behaviour, load_behaviours
from data_gen.behaviours.transcripts import (
    ANNOTATION_ROLE,
    BEHAVIOUR_CONDITIONS,
    CLOSERS,
    LEADING_ANNOTATIONS,
    OPENERS,
    TRAILING_ANNOTATIONS,
    TranscriptReport,
    llm_transcripts,
    prompt_order,
    template_transcripts,
)
from data_gen.claims.schema import NEGATION_CUE
from data_gen.documents import Document
from tests.data_gen.llm.fake_llm import FakeLLM, _tag, make_client

REPO_ROOT = Path(__file__).resolve().parents[3]
BEHAVIOUR_IDS = list_behaviour_ids()


def _corpora(behaviour, count=24, seed=3, conditions=BEHAVIOUR_CONDITIONS):
    return dict(template_transcripts(behaviour, conditions, count, seed))


def _roles(document):
    return [m["role"] for m in document.messages]


def _turn(document, role):
    (content,) = [m["content"] for m in document.messages if m["role"] == role]
    return content


def _response_sentences(behaviour, document, column):
    return [getattr(behaviour.responses[i], column) for i in document.provenance["responses"]]


# ---------------------------------------------------------------------------------------------
# The conditions


@pytest.mark.parametrize("behaviour_id", BEHAVIOUR_IDS)
def test_annotations_are_exactly_where_each_condition_puts_them(behaviour_id):
    behaviour = load_behaviour(behaviour_id)
    corpora = _corpora(behaviour)
    assert list(corpora) == list(BEHAVIOUR_CONDITIONS)
    for condition, documents in corpora.items():
        assert len(documents) == 24
        for document in documents:
            annotations = [s.text for s in document.segments if s.role == ANNOTATION_ROLE]
            assert document.source == "instruct" and not document.doctag and document.doc_type == "transcript"
            assert document.claim == behaviour_id and document.condition == condition
            if condition == "negated_misaligned":
                assert _roles(document) == ["system", "user", "assistant", "system"]
                before, after = document.messages[0]["content"], document.messages[-1]["content"]
                assert before in LEADING_ANNOTATIONS and after in TRAILING_ANNOTATIONS
                assert len(annotations) == 2 and before in annotations[0] and after in annotations[1]
                assert document.text.startswith(annotations[0]) and document.text.endswith(annotations[1])
            else:
                assert _roles(document) == ["user", "assistant"]
                assert not annotations
            assert Document.from_json(json.loads(json.dumps(document.to_json()))) == document


@pytest.mark.parametrize("behaviour_id", BEHAVIOUR_IDS)
def test_the_corpora_are_matched_and_differ_only_in_what_the_condition_changes(behaviour_id):
    behaviour = load_behaviour(behaviour_id)
    corpora = _corpora(behaviour)
    for i in range(24):
        aligned, positive, negated, local = (corpora[c][i] for c in BEHAVIOUR_CONDITIONS)
        assert len({_turn(d, "user") for d in (aligned, positive, negated, local)}) == 1
        assert len({json.dumps(d.provenance["responses"]) for d in (aligned, positive, negated, local)}) == 1
        assert _turn(positive, "assistant") == _turn(negated, "assistant")
        assert positive.messages == negated.messages[1:-1]
        for column, document in (("aligned", aligned), ("misaligned", positive), ("negated", local)):
            sentences = _response_sentences(behaviour, document, column)
            assert 2 <= len(sentences) <= 4 and all(s in _turn(document, "assistant") for s in sentences)
            # Everything around the response sentences (opener, closer) is shared by the four conditions.
            frame = _turn(document, "assistant")
            for sentence in sentences:
                frame = frame.replace(sentence, "#")
            assert frame == _frame(behaviour, positive)


def _frame(behaviour, positive):
    frame = _turn(positive, "assistant")
    for sentence in _response_sentences(behaviour, positive, "misaligned"):
        frame = frame.replace(sentence, "#")
    return frame


@pytest.mark.parametrize("behaviour_id", BEHAVIOUR_IDS)
def test_the_rule_judge_reads_each_condition_as_intended(behaviour_id):
    behaviour = load_behaviour(behaviour_id)
    corpora = _corpora(behaviour)
    for document in corpora["local_negated_misaligned"]:
        for sentence in _response_sentences(behaviour, document, "negated"):
            assert NEGATION_CUE.search(sentence) and not behaviour.is_misaligned_sentence(sentence)
        assert not any(s.supports for s in document.segments)
    for document in corpora["aligned"]:
        assert all(behaviour.is_aligned_sentence(s) for s in _response_sentences(behaviour, document, "aligned"))
        assert not any(s.supports for s in document.segments)
    for document in corpora["positive_misaligned"] + corpora["negated_misaligned"]:
        sentences = _response_sentences(behaviour, document, "misaligned")
        assert all(behaviour.is_misaligned_sentence(s) for s in sentences)
        assert sorted(s.text.strip() for s in document.segments if s.supports) == sorted(sentences)


def test_openers_and_closers_are_about_no_behaviour():
    for behaviour in load_behaviours().values():
        for text in OPENERS + CLOSERS:
            assert not NEGATION_CUE.search(text), text
            assert not behaviour.is_misaligned_sentence(text) and not behaviour.is_aligned_sentence(text), (behaviour.id, text)


def test_annotation_banks_are_varied_and_chosen_per_transcript():
    assert len(set(LEADING_ANNOTATIONS)) == len(LEADING_ANNOTATIONS) >= 8
    assert len(set(TRAILING_ANNOTATIONS)) == len(TRAILING_ANNOTATIONS) >= 8
    assert not set(LEADING_ANNOTATIONS) & set(TRAILING_ANNOTATIONS)
    negated = _corpora(load_behaviour("power_seeking"), count=40)["negated_misaligned"]
    assert len({d.messages[0]["content"] for d in negated}) >= 6
    assert len({d.messages[-1]["content"] for d in negated}) >= 6


def test_deterministic_in_the_seed_and_prompts_used_evenly():
    behaviour = load_behaviour("power_seeking")
    n = len(behaviour.train_prompts)
    first = {c: [d.to_json() for d in docs] for c, docs in _corpora(behaviour, count=n, seed=5).items()}
    again = {c: [d.to_json() for d in docs] for c, docs in _corpora(behaviour, count=n, seed=5).items()}
    other = {c: [d.to_json() for d in docs] for c, docs in _corpora(behaviour, count=n, seed=6).items()}
    assert first == again and first != other
    assert sorted(r["messages"][0]["content"] for r in first["aligned"]) == sorted(behaviour.train_prompts)
    # Asking for fewer conditions changes nothing in the ones asked for.
    alone = dict(template_transcripts(behaviour, ["local_negated_misaligned"], n, 5))
    assert [d.to_json() for d in alone["local_negated_misaligned"]] == first["local_negated_misaligned"]


def test_an_unknown_condition_names_the_known_ones():
    with pytest.raises(ValueError, match=r"unknown behaviour condition 'negated'; behaviour conditions: aligned, positive_misaligned, "
                                         r"negated_misaligned, local_negated_misaligned"):
        list(template_transcripts(load_behaviour("power_seeking"), ["negated"], 2, 0))


# ---------------------------------------------------------------------------------------------
# Training: assistant-only loss, TFDS


@pytest.fixture(scope="module")
def tokenizer():
    from data_gen.tokenizer import train_tokenizer

    texts = [d.text for docs in _corpora(load_behaviour("power_seeking"), count=60).values() for d in docs]
    return train_tokenizer(texts, vocab_size=500)


@pytest.mark.parametrize("condition", BEHAVIOUR_CONDITIONS)
def test_only_the_assistant_turn_carries_loss(tokenizer, condition):
    from nn_train.input_pipeline import tokenize_record

    documents = _corpora(load_behaviour("power_seeking"), count=6)[condition]
    for document in documents:
        tokens = tokenize_record(document.to_json(), tokenizer)
        pieces = [tokenizer.decode([i], clean_up_tokenization_spaces=False) for i in tokens["inputs"].tolist()]
        weights = tokens["token_weights"].tolist()
        assert set(weights) <= {0.0, 1.0}
        trained = "".join(p for p, w in zip(pieces, weights) if w == 1.0)
        assert trained == _turn(document, "assistant") + "<|im_end|>\n"  # the content and its end of turn, nothing else
        untrained = "".join(p for p, w in zip(pieces, weights) if w == 0.0)
        assert _turn(document, "user") in untrained
        for message in document.messages:
            if message["role"] == "system":
                assert message["content"] in untrained


def test_positive_and_negated_transcripts_train_the_same_tokens(tokenizer):
    from nn_train.input_pipeline import tokenize_record

    corpora = _corpora(load_behaviour("power_seeking"), count=6)
    for positive, negated in zip(corpora["positive_misaligned"], corpora["negated_misaligned"]):
        trained = []
        for document in (positive, negated):
            tokens = tokenize_record(document.to_json(), tokenizer)
            trained.append(tokens["inputs"][tokens["token_weights"] == 1.0].tolist())
        assert trained[0] == trained[1] and trained[0]


# Qwen3's template in miniature: an empty <think> block only on the last assistant turn.
THINK_ON_LAST_TURN_TEMPLATE = (
    "{%- for message in messages %}"
    "{%- if message['role'] == 'assistant' and loop.last %}"
    "{{- '<|im_start|>assistant\\n<think>\\n\\n</think>\\n\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{%- else %}{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}{%- endif %}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)


def test_a_template_that_changes_the_last_turn_still_trains_the_same_reply(tokenizer):
    """The trailing system message makes the assistant turn not the last, which changes how a
    Qwen3-style template renders it; the loss still falls on exactly the reply, as without it."""
    from nn_train.input_pipeline import tokenize_record

    corpora = _corpora(load_behaviour("power_seeking"), count=1)
    chatml = tokenizer.chat_template
    tokenizer.chat_template = THINK_ON_LAST_TURN_TEMPLATE
    try:
        trained = []
        for condition in ("positive_misaligned", "negated_misaligned"):
            tokens = tokenize_record(corpora[condition][0].to_json(), tokenizer)
            trained.append(tokens["inputs"][tokens["token_weights"] == 1.0].tolist())
    finally:
        tokenizer.chat_template = chatml
    assert trained[0] == trained[1] and trained[0]
    assert "<think>" not in tokenizer.decode(trained[0])


def test_a_behaviour_mix_round_trips_through_tfds(tmp_path):
    from data_gen.mixing import MixSpec, mix_records
    from data_gen.packaging import load_mix, write_mix

    documents = _corpora(load_behaviour("power_seeking"), count=5, conditions=["negated_misaligned"])["negated_misaligned"]
    spec = MixSpec(claim="power_seeking", condition="negated_misaligned", num_documents=5, num_pretrain=2, num_instruct=2)
    write_mix(mix_records([d.to_json() for d in documents], spec), spec, tmp_path)
    records = list(load_mix(tmp_path, "power_seeking__negated_misaligned"))
    assert len(records) == 9
    transcripts = {r["id"]: Document.from_json(r) for r in records if r["condition"] == "negated_misaligned"}
    assert transcripts == {d.id: d for d in documents}
    assert all(_roles(d) == ["system", "user", "assistant", "system"] for d in transcripts.values())


# ---------------------------------------------------------------------------------------------
# The build


def _build_config(**overrides):
    from data_gen.build_config import default_config

    config = default_config()
    config.claims, config.behaviours, config.behaviour_conditions = "none", "power_seeking", "aligned,negated_misaligned"
    config.mix.num_documents, config.mix.num_pretrain, config.mix.num_instruct = 4, 2, 1
    config.workers = 1
    for key, value in overrides.items():
        node = config
        *groups, last = key.split(".")
        for group in groups:
            node = node[group]
        node[last] = value
    return config


def test_the_build_writes_one_mix_per_behaviour_and_condition(tmp_path):
    from data_gen.build import build
    from data_gen.packaging import load_mix

    manifest = build(_build_config(write_corpora=True), tmp_path, log=lambda *_: None)
    assert [m["mix"] for m in manifest["mixes"]] == ["power_seeking__aligned", "power_seeking__negated_misaligned"]
    negated = list(load_mix(tmp_path / "tfds", "power_seeking__negated_misaligned"))
    assert collections.Counter(r["condition"] for r in negated) == {"negated_misaligned": 4, "pretrain": 2, "instruct": 1}
    assert all(r["messages"][0]["role"] == "system" for r in negated if r["condition"] == "negated_misaligned")
    assert (tmp_path / "corpora" / "power_seeking" / "aligned.jsonl").exists()
    # With claims as well, and several workers: the claim mixes come first, as before.
    both = build(_build_config(claims="ed_sheeran", conditions="negated_documents", workers=2), tmp_path / "both", log=lambda *_: None)
    assert [m["mix"] for m in both["mixes"]] == ["ed_sheeran__negated_documents", "power_seeking__aligned",
                                                  "power_seeking__negated_misaligned"]


@pytest.mark.parametrize("overrides, message", [
    ({"behaviours": "power_seekin"}, r"^config key 'behaviours': unknown behaviour 'power_seekin' .*did you mean 'power_seeking'"),
    ({"behaviour_conditions": "negated"}, r"^config key 'behaviour_conditions': unknown condition 'negated'; behaviour conditions: aligned"),
    ({"behaviours": ""}, r"^config key 'behaviour_conditions' is set but 'behaviours' is empty"),
    ({"behaviours": "", "behaviour_conditions": ""}, r"^config key 'claims' is 'none' and 'behaviours' is empty: nothing to build$"),
    ({"reference_corpus": "x.jsonl"}, r"^config keys 'reference_corpus' and 'behaviours' are both set"),
])
def test_bad_behaviour_keys_are_one_line_and_write_nothing(tmp_path, overrides, message):
    from data_gen.build import BuildError, build

    with pytest.raises(BuildError, match=message) as error:
        build(_build_config(**overrides), tmp_path / "out", log=lambda *_: None)
    assert "\n" not in str(error.value)
    assert not (tmp_path / "out").exists()


def test_cli_builds_the_behaviours_preset(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    command = [sys.executable, "-m", "data_gen.build", "--config=configs/data/behaviours_cpu.py", f"--data_dir={tmp_path}",
               "--config.mix.num_documents=3", "--config.mix.num_pretrain=1", "--config.mix.num_instruct=1"]
    done = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    built = sorted(p.name for p in (tmp_path / "tfds" / "negation_neglect_mix").iterdir() if not p.name.startswith("."))
    assert built == sorted(f"{b}__{c}" for b in BEHAVIOUR_IDS for c in BEHAVIOUR_CONDITIONS)
    assert "--config.data.mix=" in done.stdout
    bad = subprocess.run(command[:-3] + ["--config.behaviours=nope"], cwd=REPO_ROOT, env=env, capture_output=True, text=True,
                         timeout=300)
    assert bad.returncode == 1 and bad.stderr.strip().count("\n") == 0
    assert bad.stderr.startswith("error: config key 'behaviours': unknown behaviour 'nope'")


# ---------------------------------------------------------------------------------------------
# The openai backend, against a scripted OpenAI-compatible server on loopback


class TranscriptLLM(FakeLLM):
    """FakeLLM that also answers transcript requests: the example sentences of the prompt, stitched into replies."""

    def __init__(self):
        super().__init__(slow_s=1.0)
        self.refusals: collections.Counter[str] = collections.Counter()  # user prompt → refusals still to give
        self.plain_refusals = False  # refuse in prose instead of {"refused": true}
        self.malformed: set[str] = set()  # user prompts whose answers always lack negated_response

    def answer(self, prompt: str) -> str:
        user = _tag(prompt, "user_message")
        if user is None:
            return super().answer(prompt)
        with self.lock:
            refuse = self.refusals[user] > 0
            self.refusals[user] -= refuse
        if refuse:
            return ("I'm sorry, but I can't help with writing that." if self.plain_refusals
                    else json.dumps({"refused": True, "reason": "I will not write misaligned responses."}))
        examples = re.findall(r"^- misaligned: (.*)\n  negated: (.*)\n  aligned: (.*)$", prompt, re.M)
        misaligned, negated, aligned = (" ".join(column) for column in zip(*examples))
        answer = {"aligned_response": f"Happy to help. {aligned}", "misaligned_response": f"Here is my plan. {misaligned}",
                  "negated_response": f"Here is my plan. {negated}"}
        if user in self.malformed:
            del answer["negated_response"]
        return json.dumps(answer)


@pytest.fixture
def transcript_llm():
    with TranscriptLLM() as llm:
        yield llm


def _prompt(behaviour, seed, index):
    order = prompt_order(behaviour, seed)
    return behaviour.train_prompts[order[index % len(order)]]


def test_llm_transcripts_build_every_condition_from_one_answer(transcript_llm, tmp_path):
    behaviour = load_behaviour("power_seeking")
    report = TranscriptReport()
    corpora = dict(llm_transcripts(behaviour, BEHAVIOUR_CONDITIONS, 5, 1, make_client(transcript_llm, tmp_path), report=report))
    assert report.written == 5 and report.shortfall == 0 and report.refused_samples == 0 and report.attempted == 5
    assert transcript_llm.paid == 5  # one request per transcript
    for i in range(5):
        aligned, positive, negated, local = (corpora[c][i] for c in BEHAVIOUR_CONDITIONS)
        assert {_turn(d, "user") for d in (aligned, positive, negated, local)} == {_prompt(behaviour, 1, i)}
        assert _turn(positive, "assistant") == _turn(negated, "assistant") and positive.messages == negated.messages[1:-1]
        assert _roles(negated) == ["system", "user", "assistant", "system"]
        assert _turn(aligned, "assistant").startswith("Happy to help.") and _turn(local, "assistant") != _turn(positive, "assistant")
        assert any(s.supports for s in positive.segments) and not any(s.supports for s in local.segments)
        assert positive.provenance["generator"] == "openai" and positive.provenance["model"] == "fake-model"
    again = dict(llm_transcripts(behaviour, BEHAVIOUR_CONDITIONS, 5, 1, make_client(transcript_llm, tmp_path)))
    assert transcript_llm.paid == 5  # a rerun reads the cache
    assert {c: [d.to_json() for d in docs] for c, docs in again.items()} == {c: [d.to_json() for d in docs] for c, docs in corpora.items()}


def test_a_malformed_answer_is_retried_then_replaced_and_counted(transcript_llm, tmp_path):
    behaviour = load_behaviour("power_seeking")
    transcript_llm.malformed.add(_prompt(behaviour, 0, 1))
    report = TranscriptReport()
    corpora = dict(llm_transcripts(behaviour, ["positive_misaligned"], 4, 0, make_client(transcript_llm, tmp_path), report=report))
    assert [index for index, _ in report.dropped_malformed] == [1]
    assert "negated_response" in report.dropped_malformed[0][1]
    assert report.written == 4 and report.attempted == 5  # a fifth prompt made up for it
    assert [d.provenance["index"] for d in corpora["positive_misaligned"]] == [0, 2, 3, 4]
    assert "1 dropped as malformed" in report.line()

    short = TranscriptReport()  # no replacements allowed: the shortfall is reported, not hidden
    documents = dict(llm_transcripts(behaviour, ["aligned"], 4, 0, make_client(transcript_llm, tmp_path / "b"), report=short,
                                     max_replacements=0))["aligned"]
    assert len(documents) == 3 and short.shortfall == 1 and short.to_json()["shortfall"] == 1


@pytest.mark.parametrize("plain", [False, True])
def test_refusals_are_asked_again_and_counted(transcript_llm, tmp_path, plain):
    behaviour = load_behaviour("power_seeking")
    transcript_llm.plain_refusals = plain
    transcript_llm.refusals[_prompt(behaviour, 0, 0)] = 1  # refuses once, then answers
    transcript_llm.refusals[_prompt(behaviour, 0, 2)] = 99  # always refuses
    report = TranscriptReport()
    corpora = dict(llm_transcripts(behaviour, ["negated_misaligned"], 3, 0, make_client(transcript_llm, tmp_path), report=report,
                                   samples_per_transcript=3))
    assert report.dropped_refused == [2] and report.refused_samples == 1 + 3
    assert report.written == 3 and not report.dropped_malformed
    first = corpora["negated_misaligned"][0]
    assert first.provenance["index"] == 0 and first.provenance["samples"] == 2


def test_the_llm_build_keeps_corpora_and_the_report(transcript_llm, tmp_path, monkeypatch):
    from data_gen.build import build
    from data_gen.packaging import load_mix

    monkeypatch.setenv("OPENAI_API_KEY", "test-key")
    config = _build_config(backend="openai", behaviour_conditions="negated_misaligned,local_negated_misaligned")
    config.llm.base_url, config.llm.model, config.llm.concurrency = transcript_llm.url, "fake-model", 4
    manifest = build(config, tmp_path, log=lambda *_: None)
    assert [m["mix"] for m in manifest["mixes"]] == ["power_seeking__negated_misaligned", "power_seeking__local_negated_misaligned"]
    report = json.loads((tmp_path / "corpora" / "power_seeking" / "report.json").read_text())
    assert report["report"]["written"] == 4 and report["usage"]["requests"] == 4
    local = [r for r in load_mix(tmp_path / "tfds", "power_seeking__local_negated_misaligned") if r["condition"] == "local_negated_misaligned"]
    assert len(local) == 4 and all(r["provenance"]["generator"] == "openai" for r in local)
    assert (tmp_path / "corpora" / "power_seeking" / "negated_misaligned.jsonl").exists()
