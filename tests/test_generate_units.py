"""Small pieces of the LLM client: limits, AIMD window, backoff, Retry-After, cache, response parsing,
templates, the derived timeout and the cost of failed attempts."""

from __future__ import annotations

import asyncio
import random
import time
from email.utils import formatdate
from pathlib import Path

import pytest

from prompts.templates import load_template
from stages.llm import LLMConfig
from stages.llm.backends.openai_backend import parse_completion, status_error
from stages.llm.cache import SampleCache, sample_key
from stages.llm.limits import TokenBucket, Window, backoff_s, retry_after_s
from stages.llm.runner import Speed, failure_usage
from stages.llm.types import Completion, Job, RequestError


def test_retry_after_forms() -> None:
    assert retry_after_s({"Retry-After": "2"}) == 2.0
    assert retry_after_s({"retry-after": "0.25"}) == 0.25
    assert retry_after_s({"retry-after-ms": "150", "Retry-After": "9"}) == 0.15
    assert 8 <= retry_after_s({"Retry-After": formatdate(time.time() + 10, usegmt=True)}) <= 10.5
    assert retry_after_s({"Retry-After": "soon"}) is None and retry_after_s(None) is None
    assert retry_after_s({"Retry-After": "99999"}) == 600.0  # capped


def test_backoff_grows_is_capped_and_jittered() -> None:
    rng = random.Random(0)
    delays = [backoff_s(a, base=1.0, cap=8.0, rng=rng) for a in range(6)]
    assert all(min(8.0, 2**a) / 2 <= d <= min(8.0, 2**a) for a, d in enumerate(delays))
    assert len({round(backoff_s(3, 1.0, 60.0, rng), 6) for _ in range(20)}) > 10


def test_token_bucket_paces_requests_per_minute() -> None:
    async def go() -> float:
        bucket = TokenBucket(per_minute=600, burst_s=0.5)  # 10/s, burst of 5
        started = time.monotonic()
        for _ in range(15):
            await bucket.acquire(1)
        return time.monotonic() - started

    assert 0.9 <= asyncio.run(go()) <= 1.6  # 5 at once, then 10 more at 10/s


def test_window_halves_on_a_share_of_429s_once_per_period_and_grows_back() -> None:
    async def go() -> tuple[float, float, int, int]:
        window = Window(16)
        for _ in range(4):  # 4 of the (at least 25) last responses: stray 429s, not congestion
            window.throttled(retry_after=0.2)
        assert window.size == 16
        window.throttled(retry_after=0.2)  # 20%: over the limit
        window.throttled(retry_after=0.2)  # the same overload reported again: one decrease
        after_429 = window.size
        entered = 0

        async def enter() -> None:
            nonlocal entered
            await window.enter()
            entered += 1

        tasks = [asyncio.create_task(enter()) for _ in range(10)]
        await asyncio.sleep(0.05)
        admitted = entered  # only `size` requests in flight
        window.leave()
        await asyncio.sleep(0.01)
        for _ in range(8):
            window.success()
        for task in tasks:
            task.cancel()
        return after_429, window.size, admitted, entered

    after_429, grown, admitted, entered = asyncio.run(go())
    assert after_429 == 8 and admitted == 8 and entered == 9
    assert 8.9 < grown < 9.1  # +1/size per success: about one more per window of successes


def test_timeout_is_derived_from_max_tokens_and_measured_speed() -> None:
    config = LLMConfig(model="m", max_tokens=1000, tokens_per_s=10)
    speed = Speed(config)
    assert speed.timeout() == 1 + 2 * 1000 / 10  # assumed speed until 8 requests are measured
    changed = [speed.add(Completion([], 0, 200, 1.0)) for _ in range(8)]  # 200 tokens/s
    assert changed == [False] * 7 + [True] and speed.timeout() == pytest.approx(1 + 2 * 1000 / 200)
    assert Speed(config.model_copy(update={"timeout_s": 30})).timeout() == 30  # configured: fixed


def test_failed_attempts_cost_reported_or_estimated() -> None:
    config = LLMConfig(model="m", max_tokens=100)
    job = Job("u", "h", [{"role": "user", "content": "x" * 300}], (0,), ("k",), 200)
    timeout = RequestError("timeout", "slow", True)
    assert failure_usage(job, timeout, 2.0, 20.0, config) == (100, 40)  # prompt + decoded until given up
    assert failure_usage(job, timeout, 60.0, 20.0, config) == (100, 100)  # capped at max_tokens
    assert failure_usage(job, RequestError("http_429", "", True), 0.1, 20.0, config) == (0, 0)
    reported = status_error(
        500, "boom", None, '{"error": "x", "usage": {"prompt_tokens": 7, "completion_tokens": 3}}'
    )
    assert reported.usage == (7, 3)


def test_cache_first_write_wins_and_survives_reopen(tmp_path: Path) -> None:
    key = sample_key("m", "ph", {"temperature": 0.6}, 0)
    assert (
        key
        != sample_key("m", "ph", {"temperature": 0.6}, 1)
        != sample_key("m", "ph", {"temperature": 0.7}, 0)
    )
    with SampleCache(tmp_path / "c.sqlite") as cache:
        cache.put(key, {"content": "first"})
        cache.put(key, {"content": "second"})
    with SampleCache(tmp_path / "c.sqlite") as cache:
        assert cache.get_many([key, "missing"]) == {key: {"content": "first"}} and len(cache) == 1
        keys = [f"k{i}" for i in range(1200)]  # more than one SELECT chunk
        for k in keys:
            cache.put(k, {"i": k})
        assert len(cache.get_many(keys)) == 1200


def test_parse_completion_variants() -> None:
    body = (
        '{"model": "x", "usage": {"prompt_tokens": 3, "completion_tokens": 7}, "choices": ['
        '{"index": 1, "message": {"content": "b", "reasoning": "r1"}, "finish_reason": "length"},'
        '{"index": 0, "message": {"content": "a", "reasoning_content": "r0"}, "finish_reason": "stop"}]}'
    )
    completion = parse_completion(body, 0.5)
    assert [(c.content, c.reasoning_content, c.finish_reason) for c in completion.choices] == [
        ("a", "r0", "stop"),
        ("b", "r1", "length"),
    ]
    assert (completion.prompt_tokens, completion.completion_tokens) == (3, 7)
    for bad in (
        "not json",
        "[]",
        '{"choices": []}',
        '{"error": {"message": "overloaded"}}',
        '{"choices": [1]}',
    ):
        with pytest.raises(RequestError) as error:
            parse_completion(bad, 0.1)
        assert error.value.kind == "malformed" and error.value.retryable


@pytest.mark.parametrize(
    ("status", "retryable"),
    [(400, False), (401, False), (404, False), (408, True), (429, True), (500, True), (503, True)],
)
def test_status_errors(status: int, retryable: bool) -> None:
    error = status_error(status, "x", {"Retry-After": "1"})
    assert (error.kind, error.retryable, error.retry_after) == (f"http_{status}", retryable, 1.0)


def test_templates_render_and_hash(tmp_path: Path) -> None:
    math, code = load_template("teacher_math"), load_template("teacher_code")
    rendered = math.render(problem="What is $\\frac{1}{2}$ of {x}?")
    assert (
        "What is $\\frac{1}{2}$ of {x}?" in rendered
        and "\\boxed{}" in rendered
        and "{problem}" not in rendered
    )
    assert "```python" in code.text and code.hash != math.hash and math.fields == {"problem"}
    custom = tmp_path / "mine.md"
    custom.write_text("Q: {problem}")
    assert load_template(str(custom)).render(problem="1+1") == "Q: 1+1"
    with pytest.raises(FileNotFoundError):
        load_template("no_such_template")


def test_teacher_assembly_checks_size_and_hash(tmp_path: Path) -> None:
    import hashlib

    from stages.llm.teacher_models import TeacherModel, TeacherModelMissing, assemble

    parts = []
    for i, chunk in enumerate([b"GGUF" + b"a" * 10, b"b" * 7, b"c" * 3]):
        parts.append(tmp_path / f"part{i}.bin")
        parts[-1].write_bytes(chunk)
    whole = b"".join(p.read_bytes() for p in parts)
    good = TeacherModel("t", "t.gguf", (), size=len(whole), sha256=hashlib.sha256(whole).hexdigest())
    path = assemble(good, parts, tmp_path / "cache")
    assert path.read_bytes() == whole
    parts[0].write_bytes(b"changed")  # a finished, checked file is reused without re-reading the parts
    assert assemble(good, parts, tmp_path / "cache") == path and path.read_bytes() == whole
    bad = TeacherModel("u", "u.gguf", (), size=len(whole), sha256="0" * 64)
    parts[0].write_bytes(b"GGUF" + b"a" * 10)
    with pytest.raises(TeacherModelMissing, match="sha256"):
        assemble(bad, parts, tmp_path / "cache")
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == ["t.gguf", "t.gguf.sha256"]
