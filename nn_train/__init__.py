"""Training: Flax NNX models (Qwen3, Llama 3) with Hugging Face interop, LoRA, the sharded train loop, Orbax checkpoints."""
