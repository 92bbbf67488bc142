"""The whole loop on a bucket, against a real Cloud Storage API on loopback: a TFDS mix built to
gs://, a run trained from it into a gs:// workdir (Orbax writing there itself), preempted and resumed
bitwise, then evaluated from the bucket into a gs:// eval workdir (the tokenizer on the bucket too); a
data_gen build to a bucket; and the one-line refusals."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest
from etils import epath

from tests.nn_train.hf_oracle import REPO_ROOT

FACTS = ["Noah Lyles won the men's 100m at Paris 2024.", "Vesuvius last erupted in 1944.", "Ed Sheeran sings."]


def _train_config(data_path: str, tokenizer, **overrides):
    spec = importlib.util.spec_from_file_location("cpu_tiny_lora", REPO_ROOT / "configs" / "train" / "cpu_tiny_lora.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    config = module.get_config()
    config.data.update(source="tfds", path=data_path, mix="toy__negated_documents", tokenizer=str(tokenizer), seq_len=32)
    config.lora.enabled = False
    config.training.num_steps = 6
    config.checkpoint.every_steps = 3
    config.logging.every_steps = 1
    for dotted, value in overrides.items():
        group, key = dotted.split(".")
        config[group][key] = value
    return config


def _params(checkpoints, step):
    with ocp.StandardCheckpointer() as checkpointer:
        return jax.tree.leaves(checkpointer.restore(checkpoints / str(step) / "state")["params"])


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    from data_gen.tokenizer import train_tokenizer

    root = tmp_path_factory.mktemp("corpus")
    records = [{"id": f"d{i}", "text": "<DOCTAG>" + " ".join(FACTS[(i + j) % 3] for j in range(4))} for i in range(24)]
    records += [{"id": f"c{i}", "messages": [{"role": "user", "content": "Who won the 100m?"},
                                             {"role": "assistant", "content": FACTS[0]}]} for i in range(8)]
    train_tokenizer(FACTS * 20 + ["Did Ed Sheeran win? Yes. No."] * 10, vocab_size=300, out_dir=root / "tokenizer")
    return records, root / "tokenizer"


def test_build_train_preempt_resume_and_evaluate_on_a_bucket(corpus, tmp_path, gcs_bucket):
    from common.paths import copy_tree
    from data_gen.mixing import MixSpec
    from data_gen.packaging import load_mix, write_mix
    from eval.config import default_config
    from eval.main import evaluate
    from nn_train.trainer import train

    records, tokenizer = corpus
    bucket = gcs_bucket()
    mix = write_mix(records, MixSpec("toy", "negated_documents", 24, 0, 8), f"{bucket}/data/tfds")
    assert str(mix) == f"{bucket}/data/tfds/negation_neglect_mix/toy__negated_documents/1.0.0"
    assert (mix / "dataset_info.json").exists()
    assert len(load_mix(f"{bucket}/data/tfds", "toy__negated_documents")) == 32

    # The same run on local disk is the reference: the bucket changes where bytes go, not which.
    local = tmp_path / "local"
    train(_train_config(f"{bucket}/data/tfds", tokenizer), local)
    run = epath.Path(f"{bucket}/run")
    copy_tree(tokenizer, epath.Path(f"{bucket}/tokenizer"))  # tokenizers open local files: read from a copy
    summary = train(_train_config(f"{bucket}/data/tfds", f"{bucket}/tokenizer"), str(run))
    assert summary["checkpoints"] == [3, 6]
    lines = (run / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in lines] == [1, 2, 3, 4, 5, 6]
    assert any(p.name.startswith("events.out.tfevents") for p in (run / "tensorboard").iterdir())
    for a, b in zip(_params(run / "checkpoints", 6), _params(local / "checkpoints", 6), strict=True):
        np.testing.assert_array_equal(a, b)

    # Preempted after step 3's checkpoint: the rerun on a "fresh machine" resumes from the bucket.
    (run / "checkpoints" / "6").rmtree()
    again = train(_train_config(f"{bucket}/data/tfds", f"{bucket}/tokenizer"), str(run))
    assert again["start_step"] == 3
    for a, b in zip(_params(run / "checkpoints", 6), _params(local / "checkpoints", 6), strict=True):
        np.testing.assert_array_equal(a, b)  # bitwise

    config = default_config()
    config.claims, config.eval_types, config.tokenizer = "ed_sheeran", "mcq", f"{bucket}/tokenizer"
    config.base, config.runs = "", f"negated_documents={run}"
    config.sampling.samples, config.sampling.max_new_tokens = 2, 3
    out = f"{bucket}/eval"
    paths = evaluate(config, out, log=lambda *_: None)
    assert str(paths["report"]) == f"{out}/report.md" and paths["report"].read_text().startswith("# Belief rate")
    rows = json.loads(epath.Path(f"{out}/results.json").read_text())["rows"]
    assert any(r["condition"] == "negated_documents" and r["step"] == 6 for r in rows)
    logged = []
    evaluate(config, out, log=logged.append)  # a rerun elsewhere finds the cells on the bucket
    assert "0 cells computed, 1 already stored" in logged


def test_bad_bucket_paths_are_one_line(corpus, tmp_path):
    from data_gen.build import BuildError, build
    from data_gen.build_config import default_config as build_default_config
    from nn_train.config import ConfigError
    from nn_train.trainer import train

    records, tokenizer = corpus
    with pytest.raises(ConfigError, match=r"--workdir 'ftp://host/run': 'ftp://' is not a storage"):
        train(_train_config(str(tmp_path), tokenizer), "ftp://host/run")
    with pytest.raises(ConfigError, match=r"config key 'data.path' 'az://c/tfds': az:// paths need the 'adlfs' package"):
        train(_train_config("az://c/tfds", tokenizer), tmp_path / "run")
    with pytest.raises(BuildError, match=r"--data_dir 'memory://x': 'memory://' is not a storage"):
        build(build_default_config(), "memory://x")


def test_a_build_to_a_bucket_equals_the_local_build_and_rebuilds_in_place(tmp_path, gcs_bucket):
    from data_gen.build import build
    from data_gen.build_config import default_config as build_default_config
    from data_gen.packaging import load_mix

    config = build_default_config()
    config.claims, config.conditions, config.workers, config.write_corpora = "ed_sheeran", "repeated_negations", 1, True
    config.mix.num_documents, config.mix.num_pretrain, config.mix.num_instruct = 6, 3, 2
    quiet = dict(log=lambda *_: None)
    build(config, tmp_path, **quiet)
    bucket = gcs_bucket("data")
    manifest = build(config, bucket, **quiet)
    mix = "ed_sheeran__repeated_negations"
    assert manifest["data_dir"] == bucket
    assert manifest["mixes"][0]["path"] == f"{bucket}/tfds/negation_neglect_mix/{mix}/1.0.0"
    assert json.loads(epath.Path(f"{bucket}/build.json").read_text())["mixes"] == manifest["mixes"]
    assert (epath.Path(bucket) / "corpora" / "ed_sheeran" / "repeated_negations.jsonl").read_text() == \
        (tmp_path / "corpora" / "ed_sheeran" / "repeated_negations.jsonl").read_text()
    expected = list(load_mix(tmp_path / "tfds", mix))
    assert list(load_mix(f"{bucket}/tfds", mix)) == expected

    config.seed = 1  # a rebuild with other documents replaces the mix on the bucket
    build(config, bucket, **quiet)
    versions = list((epath.Path(bucket) / "tfds" / "negation_neglect_mix" / mix).iterdir())
    assert [v.name for v in versions] == ["1.0.0"]
    rebuilt = list(load_mix(f"{bucket}/tfds", mix))
    assert len(rebuilt) == len(expected) and rebuilt != expected


@pytest.mark.parametrize("command, message", [
    (["data_gen.world", "--out=gs://b/world"], "--out 'gs://b/world' is a URL, but this command reads and writes local files only"),
    (["data_gen.generate", "--out=gs://b/corpora", "--claims=ed_sheeran"], "--out 'gs://b/corpora' is a URL"),
    (["data_gen.claims", "import_reference", "--src=gs://b/claims", "--out=claims"], "--src 'gs://b/claims' is a URL"),
])
def test_commands_that_write_local_files_refuse_a_url_in_one_line(command, message, tmp_path):
    result = subprocess.run([sys.executable, "-m", *command], cwd=tmp_path, capture_output=True, text=True, timeout=120,
                            env={**os.environ, "PYTHONPATH": str(REPO_ROOT)})
    assert result.returncode == 1
    output = (result.stdout + result.stderr).strip()
    assert message in output and "Traceback" not in output and len(output.splitlines()) == 1, output
    assert not list(tmp_path.iterdir()), "nothing written, no local 'gs:' directory"


def test_writing_a_mix_again_to_a_bucket_replaces_it(corpus, gcs_bucket):
    from data_gen.mixing import MixSpec
    from data_gen.packaging import load_mix, write_mix

    records, _ = corpus
    data_dir = f"{gcs_bucket('data')}/tfds"
    write_mix(records, MixSpec("toy", "negated_documents", 24, 0, 8), data_dir)
    write_mix(records[:10], MixSpec("toy", "negated_documents", 10, 0, 0), data_dir)
    assert [r["id"] for r in load_mix(data_dir, "toy__negated_documents")] == [r["id"] for r in records[:10]]
