"""Evaluation: KV-cache sampler, the paper's eval suite, judges, belief rates with confidence intervals, reports."""
