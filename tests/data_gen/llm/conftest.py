"""Fixtures for the LLM tests: a scripted OpenAI-compatible server on loopback, per test."""

import pytest

from tests.data_gen.llm.fake_llm import FakeLLM


@pytest.fixture
def fake_llm():
    with FakeLLM(slow_s=1.0) as llm:  # slower than the tests' 0.5 s client timeout
        yield llm
