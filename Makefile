# Two commands on a fresh machine (only python3 >= 3.11 on PATH):
#   make demo   the main job: the negation-neglect experiment end to end on the CPU testbed (see README)
#   make test   the test suite on CPU, with 8 fake XLA devices so sharding is real
#   make bench  benchmarks, each printing its ratio against a named baseline measured in the same run
# Each target creates .venv and installs the pinned requirements when they are missing or changed.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PYTEST_ARGS ?=

.PHONY: demo test test-slow bench bench-accel clean

$(VENV)/bin/python:
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
	  { echo "error: $(PYTHON) is older than 3.11; install Python 3.11+ or run 'make PYTHON=python3.11 ...'"; exit 1; }
	@$(PYTHON) -m venv $(VENV) || { rm -rf $(VENV); \
	  echo "error: '$(PYTHON) -m venv' failed; install the venv module (Debian/Ubuntu: apt-get install python3-venv) and rerun"; exit 1; }

# Stamps record which requirement files are installed; editing a file reinstalls.
$(VENV)/.runtime-installed: requirements.txt | $(VENV)/bin/python
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt
	@touch $@

$(VENV)/.dev-installed: requirements.txt requirements-cloud.txt requirements-dev.txt | $(VENV)/bin/python
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	@touch $@ $(VENV)/.runtime-installed

# The CPU testbed (testbed/, configs/testbed/cpu.py): world corpus → tokenizer → base model pre-trained
# from scratch → TFDS mixes of four claims per condition → a fine-tune per condition → eval at every
# checkpoint → workdir/testbed/report.md. A rerun reuses every finished stage.
demo: $(VENV)/.runtime-installed
	$(PY) -m data_gen.claims validate --strict
	$(PY) -m testbed --config=configs/testbed/cpu.py --workdir=workdir/testbed

test: $(VENV)/.dev-installed
	XLA_FLAGS=--xla_force_host_platform_device_count=8 $(PY) -m pytest $(PYTEST_ARGS)

test-slow: $(VENV)/.dev-installed
	XLA_FLAGS=--xla_force_host_platform_device_count=8 $(PY) -m pytest -m slow $(PYTEST_ARGS)

# 1. Forward+backward tokens/s of our model vs transformers' PyTorch model, same config, this host.
# 2. Attention: compiled memory of the blockwise kernel vs the dense one at 2k-16k tokens, and their speed.
# 3. Compile time of the train step at 4 and 36 layers, loop vs scan_layers (flat in depth: ~1x).
# 4. The real train step (full fine-tune, then LoRA): tokens/s/device and MFU, vs the bare forward+backward.
# 5. K runs as one program (vmap over runs) vs the same K runs one after another.
# 6. The input pipeline's packed tokens/s vs what the tiny model's train step consumes (target >= 10x).
# 7. The KV-cache sampler vs transformers' generate.
# 8. One MoE layer's dispatches (ragged_dot, blocked) vs every expert on every token (dense).
#    On a GPU/TPU host: make bench BENCH_TRAIN_ARGS="--preset=qwen3_0p6b --seq_len=2048 --batch=16 --dtype=bfloat16"
BENCH_TRAIN_ARGS ?= --preset=qwen3_small --seq_len=256 --batch=8
bench: $(VENV)/.dev-installed
	$(PY) -m nn_train.models.benchmark --preset=qwen3_small --batch=8 --seq_len=256
	$(PY) -m nn_train.models.attention_benchmark --preset=qwen3_8b --lengths=2048,4096,8192,16384 --time_length=1024
	$(PY) -m nn_train.compile_benchmark --preset=qwen3_small --layers=4,36
	$(PY) -m nn_train.benchmark $(BENCH_TRAIN_ARGS)
	$(PY) -m nn_train.benchmark $(BENCH_TRAIN_ARGS) --lora
	$(PY) -m nn_train.runs_benchmark --preset=qwen3_testbed_narrow --runs=4 --seq_len=256 --batch=8
	$(PY) -m nn_train.pipeline_benchmark --preset=qwen3_tiny --seq_len=512 --batch=8
	$(PY) -m eval.benchmark --preset=qwen3_small --batch=8 --prompt_len=64 --new_tokens=64
	$(PY) -m nn_train.models.moe_benchmark --experts=16 --top_k=2 --embed_dim=256 --expert_mlp_dim=256 --tokens=2048
	$(PY) -m nn_train.models.gdn_benchmark --heads=8 --key_dim=64 --value_dim=64 --batch=2 --lengths=512,2048

# On a GPU or TPU host: MFU of full fine-tuning (qwen3_1p7b shape, bf16, 2,048-token rows) and of
# LoRA r32 (qwen3_8b shape, 4,096), decode tokens/s against the HBM roofline, the long-row
# attention kernel against dense, and a Qwen3-30B-A3B MoE layer's ragged_dot dispatch against dense
# (nn_train/accel_benchmark.py; ~8 min on an H100, random weights).
bench-accel: $(VENV)/.dev-installed
	$(PY) -m nn_train.accel_benchmark

clean:
	rm -rf $(VENV) .cache .pytest_cache
