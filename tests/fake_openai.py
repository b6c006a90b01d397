"""A fake OpenAI-compatible chat server (aiohttp, 127.0.0.1 only) that can misbehave on purpose.

Faults, injected at `fault_rate` (seeded, so runs are repeatable):
    slow       answers correctly after `slow_s`
    429        rate limited, with a `Retry-After` header (seconds, may be fractional)
    500        server error
    malformed  HTTP 200 with a body that is not JSON
    close      the connection is closed before any response
    hang       never answers within the client's timeout (sleeps `hang_s`)

It counts every attempt and every successful answer per (prompt hash, sample index), using the
`X-Longcot-Samples` header the generation backend sends, so tests can prove that no finished sample
was paid for twice.

The Batch API is faked too (Files + Batches: upload, create, retrieve, list, cancel, file content):
a batch is `in_progress` for `batch_s` seconds after it is created, then every line is answered as
an online request would be; `batch_fault_rate` of the lines fail with a 500 in the error file.
`submitted` counts every item submitted in a batch per (prompt hash, sample). Run it in a thread (`FakeOpenAI().start()`) or as a process:
`python tests/fake_openai.py --latency 0.1` prints its base URL on stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

FAULTS = ("slow", "429", "500", "malformed", "close", "hang")
STYLES = ("think", "reasoning_content", "thought_markers", "plain")


@dataclass
class FakeOpenAI:
    latency: float = 0.0
    fault_rate: float = 0.0
    faults: tuple[str, ...] = FAULTS
    seed: int = 0
    supports_n: bool = True
    style: str = "think"
    truncate_rate: float = 0.0
    slow_s: float = 0.3
    hang_s: float = 30.0
    retry_after: float = 0.05
    fail_prompts: tuple[str, ...] = ()  # prompts containing one of these always get a 500
    fail_status: int = 500
    echo_auth: bool = False  # error bodies echo the Authorization header (a leaky server)
    answer_fn: Callable[[str], str] | None = None  # the final answer for a prompt (a judge's reply)
    # the final answer for (prompt, sample index): a student whose samples disagree
    sample_answer_fn: Callable[[str, int], str] | None = None
    # the final answer for (request body, prompt, sample index): a server whose models differ (by body)
    request_answer_fn: Callable[[dict, str, int], str] | None = None
    attempts: Counter = field(default_factory=Counter)
    answered: Counter = field(default_factory=Counter)
    faults_sent: Counter = field(default_factory=Counter)
    log: list = field(default_factory=list)
    batch_s: float = 0.2
    batch_fault_rate: float = 0.0
    submitted: Counter = field(default_factory=Counter)
    files: dict = field(default_factory=dict)
    batches: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)
        self._lock = threading.Lock()
        self.base_url = ""

    # ---- request handling ----

    async def chat(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        body = json.loads(raw)
        prompt = "\n".join(str(m.get("content", "")) for m in body.get("messages", []))
        prompt_key, samples = _sample_ids(request.headers.get("X-Longcot-Samples"), prompt)
        n = int(body.get("n") or 1) if self.supports_n else 1
        with self._lock:
            for s in samples:
                self.attempts[(prompt_key, s)] += 1
            fault = self._pick_fault(prompt)
            self.log.append((time.monotonic(), prompt_key, tuple(samples), fault))
        if fault:
            self.faults_sent[fault] += 1
            response = await self._fault(fault, request)
            if response is not None:
                return response
        if self.latency:
            await asyncio.sleep(self.latency)
        return web.json_response(self._answer(body, prompt, prompt_key, samples, n))

    def _answer(self, body: dict, prompt: str, prompt_key: str, samples: list[int], n: int) -> dict:
        """A chat completion for `samples` of a prompt (counted as answered)."""
        with self._lock:
            for s in samples[:n]:
                self.answered[(prompt_key, s)] += 1
            truncated = [self._rng.random() < self.truncate_rate for _ in range(n)]
        sample_of = [samples[i] if i < len(samples) else i for i in range(n)]
        choices = [self._choice(i, prompt, truncated[i], body, sample_of[i]) for i in range(n)]
        prompt_tokens = max(1, len(prompt) // 4)
        completion_tokens = sum(len(c["message"]["content"] or "") // 4 + 5 for c in choices)
        return {
            "id": f"chatcmpl-{self._rng.randrange(1 << 30)}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model", "fake"),
            "choices": choices,
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
        }

    async def stats(self, request: web.Request) -> web.Response:
        """What a benchmark in another process needs: samples served, distinct, faults sent."""
        with self._lock:
            answered = dict(self.answered)
        return web.json_response(
            {
                "served": sum(answered.values()),
                "distinct": len(answered),
                "served_twice": sum(1 for v in answered.values() if v > 1),
                "faults": dict(self.faults_sent),
            }
        )

    # ---- the Batch API (Files + Batches) ----

    async def upload(self, request: web.Request) -> web.Response:
        form = await request.post()
        upload = form["file"]
        content = upload.file.read()  # type: ignore[union-attr]
        file_id = f"file-{len(self.files):06d}"
        self.files[file_id] = content
        return web.json_response(_file_object(file_id, len(content), str(form.get("purpose", "batch"))))

    async def file_content(self, request: web.Request) -> web.Response:
        content = self.files.get(request.match_info["file_id"])
        if content is None:
            return web.json_response({"error": {"message": "no such file"}}, status=404)
        return web.Response(body=content, content_type="application/octet-stream")

    async def create_batch(self, request: web.Request) -> web.Response:
        body = await request.json()
        content = self.files.get(body["input_file_id"])
        if content is None:
            return web.json_response({"error": {"message": "no such file"}}, status=400)
        lines = [json.loads(line) for line in content.decode().splitlines() if line.strip()]
        batch_id = f"batch_{len(self.batches):06d}"
        with self._lock:
            for line in lines:
                key, samples = _sample_ids(line["custom_id"], "")
                for s in samples:
                    self.submitted[(key, s)] += 1
        batch = {
            "id": batch_id,
            "object": "batch",
            "endpoint": body["endpoint"],
            "input_file_id": body["input_file_id"],
            "completion_window": body["completion_window"],
            "status": "in_progress",
            "created_at": int(time.time()),
            "metadata": body.get("metadata"),
            "output_file_id": None,
            "error_file_id": None,
            "request_counts": {"total": len(lines), "completed": 0, "failed": 0},
        }
        self.batches[batch_id] = batch
        asyncio.get_running_loop().call_later(self.batch_s, self._run_batch, batch_id, lines)
        return web.json_response(batch)

    def _run_batch(self, batch_id: str, lines: list[dict]) -> None:
        batch = self.batches[batch_id]
        if batch["status"] != "in_progress":
            return
        out, errors = [], []
        for line in lines:
            body = line["body"]
            prompt = "\n".join(str(m.get("content", "")) for m in body.get("messages", []))
            key, samples = _sample_ids(line["custom_id"], prompt)
            result = {"id": f"batch_req_{self._rng.randrange(1 << 30)}", "custom_id": line["custom_id"]}
            if self._rng.random() < self.batch_fault_rate:
                error_body = {"error": {"message": "internal error", "type": "server_error"}}
                errors.append(result | {"response": {"status_code": 500, "body": error_body}, "error": None})
                continue
            n = int(body.get("n") or 1) if self.supports_n else 1
            answer = self._answer(body, prompt, key, samples, n)
            out.append(result | {"response": {"status_code": 200, "body": answer}, "error": None})
        for name, rows in (("output_file_id", out), ("error_file_id", errors)):
            if rows:
                file_id = f"file-{len(self.files):06d}"
                self.files[file_id] = "".join(json.dumps(r) + "\n" for r in rows).encode()
                batch[name] = file_id
        batch["request_counts"] = {"total": len(lines), "completed": len(out), "failed": len(errors)}
        batch["status"] = "completed"
        batch["completed_at"] = int(time.time())

    async def get_batch(self, request: web.Request) -> web.Response:
        batch = self.batches.get(request.match_info["batch_id"])
        if batch is None:
            return web.json_response({"error": {"message": "no such batch"}}, status=404)
        return web.json_response(batch)

    async def list_batches(self, request: web.Request) -> web.Response:
        ordered = sorted(self.batches.values(), key=lambda b: b["id"], reverse=True)  # newest first
        after = request.query.get("after")
        if after:
            ordered = [b for b in ordered if b["id"] < after]
        limit = int(request.query.get("limit", 20))
        page = ordered[:limit]
        return web.json_response(
            {
                "object": "list",
                "data": page,
                "first_id": page[0]["id"] if page else None,
                "last_id": page[-1]["id"] if page else None,
                "has_more": len(ordered) > limit,
            }
        )

    async def cancel_batch(self, request: web.Request) -> web.Response:
        batch = self.batches[request.match_info["batch_id"]]
        if batch["status"] == "in_progress":
            batch["status"] = "cancelled"
        return web.json_response(batch)

    def _pick_fault(self, prompt: str) -> str | None:
        if any(p in prompt for p in self.fail_prompts):
            return "fail"
        if self.fault_rate and self._rng.random() < self.fault_rate:
            return self._rng.choice(self.faults)
        return None

    async def _fault(self, fault: str, request: web.Request) -> web.StreamResponse | None:
        """The response for an injected fault, or None when the request should then succeed (slow)."""
        if fault == "slow":
            await asyncio.sleep(self.slow_s)
            return None
        if fault == "429":
            headers = {"Retry-After": f"{self.retry_after:g}"}
            return web.json_response(
                {"error": {"message": "Rate limit reached", "type": "requests"}}, status=429, headers=headers
            )
        if fault == "500":
            return web.json_response({"error": {"message": "internal error"}}, status=500)
        if fault == "fail":
            message = "upstream failure"
            if self.echo_auth:
                message += f" for {request.headers.get('Authorization', '')}"
            return web.json_response({"error": {"message": message}}, status=self.fail_status)
        if fault == "malformed":
            return web.Response(text='{"choices": [{"message": ', content_type="application/json")
        if fault == "close":
            assert request.transport is not None
            request.transport.close()
            await asyncio.sleep(0.05)
            return web.Response(status=500)
        if fault == "hang":
            await asyncio.sleep(self.hang_s)
            return web.Response(status=504)
        raise ValueError(fault)

    def _choice(self, index: int, prompt: str, truncated: bool, body: dict, sample: int = 0) -> dict:
        thinking = f"Let me think about: {prompt[:60]!r}. Step one, step two."
        if self.request_answer_fn is not None:
            answer = self.request_answer_fn(body, prompt, sample)
        elif self.sample_answer_fn is not None:
            answer = self.sample_answer_fn(prompt, sample)
        elif self.answer_fn is not None:
            answer = self.answer_fn(prompt)
        else:
            answer = f"The answer is \\boxed{{{len(prompt) % 97}}}."
        message: dict = {"role": "assistant", "content": None}
        if truncated:
            message["content"] = f"<think>\n{thinking} and then some more"
        elif self.style == "reasoning_content":
            message.update(content=answer, reasoning_content=thinking)
        elif self.style == "thought_markers":
            message["content"] = (
                f"<|begin_of_thought|>\n{thinking}\n<|end_of_thought|>\n"
                f"<|begin_of_solution|>\n{answer}\n<|end_of_solution|>"
            )
        elif self.style == "plain":
            message["content"] = answer
        else:
            message["content"] = f"<think>\n{thinking}\n</think>\n\n{answer}"
        return {"index": index, "message": message, "finish_reason": "length" if truncated else "stop"}

    # ---- lifecycle ----

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self.chat)
        app.router.add_get("/stats", self.stats)
        app.router.add_post("/v1/files", self.upload)
        app.router.add_get("/v1/files/{file_id}/content", self.file_content)
        app.router.add_post("/v1/batches", self.create_batch)
        app.router.add_get("/v1/batches", self.list_batches)
        app.router.add_get("/v1/batches/{batch_id}", self.get_batch)
        app.router.add_post("/v1/batches/{batch_id}/cancel", self.cancel_batch)
        return app

    def start(self, port: int = 0) -> FakeOpenAI:
        """Serve on 127.0.0.1 from a daemon thread with its own event loop."""
        ready = threading.Event()

        def serve() -> None:
            self._loop = _new_loop()
            asyncio.set_event_loop(self._loop)
            runner = web.AppRunner(self.app(), access_log=None, shutdown_timeout=0.1)
            self._loop.run_until_complete(runner.setup())
            site = web.TCPSite(runner, "127.0.0.1", port)
            self._loop.run_until_complete(site.start())
            bound = runner.addresses[0][1]
            self.base_url = f"http://127.0.0.1:{bound}/v1"
            self._runner = runner
            ready.set()
            self._loop.run_forever()
            pending = asyncio.all_tasks(self._loop)
            for task in pending:
                task.cancel()
            self._loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            self._loop.run_until_complete(runner.cleanup())
            self._loop.close()

        self._thread = threading.Thread(target=serve, daemon=True)
        self._thread.start()
        ready.wait(10)
        return self

    def stop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    def __enter__(self) -> FakeOpenAI:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def duplicates(self) -> dict:
        """(prompt, sample) pairs that were answered successfully more than once."""
        return {k: v for k, v in self.answered.items() if v > 1}


def _file_object(file_id: str, size: int, purpose: str) -> dict:
    return {
        "id": file_id,
        "object": "file",
        "bytes": size,
        "created_at": int(time.time()),
        "filename": f"{file_id}.jsonl",
        "purpose": purpose,
        "status": "processed",
    }


def _new_loop() -> asyncio.AbstractEventLoop:
    """uvloop when installed: the fake should not be the bottleneck of a throughput benchmark."""
    try:
        import uvloop

        return uvloop.new_event_loop()
    except ImportError:
        return asyncio.new_event_loop()


def _sample_ids(header: str | None, prompt: str) -> tuple[str, list[int]]:
    """(prompt key, sample indices) from `X-Longcot-Samples: <prompt hash>:<i>,<j>`."""
    if not header:
        return prompt[:80], [0]
    key, _, samples = header.partition(":")
    return key, [int(s) for s in samples.split(",") if s]


def write_problems(
    directory: Path, count: int, domains: tuple[str, ...] = ("math",), prefix: str = "p"
) -> Path:
    """A kept/ shard of `count` problem rows (cycling through `domains`), as the stages before generate write."""
    import polars as pl

    from stages.records import PROBLEM_SCHEMA, conform

    kept = directory / "kept"
    kept.mkdir(parents=True, exist_ok=True)
    frame = pl.DataFrame(
        {
            "uid": [f"{prefix}{i:06d}" for i in range(count)],
            "source": "fake",
            "domain": [domains[i % len(domains)] for i in range(count)],
            "problem": [f"Problem {prefix}{i}: what is {i} + {i}?" for i in range(count)],
            "answer": [str(2 * i) for i in range(count)],
        }
    )
    conform(frame, PROBLEM_SCHEMA).write_parquet(kept / "part-00000.parquet")
    return kept


STAGE_SCRIPT = """
import json, sys
from pathlib import Path
from stages.generate import GenerateConfig
from stages.registry import run_stage
config = GenerateConfig.model_validate_json(sys.argv[1])
report = run_stage("generate", Path(sys.argv[2]), config, Path(sys.argv[3]), force=True)
print(json.dumps(report.model_dump(mode="json")))
"""


def stage_process(config: Any, problems: Path, out: Path) -> subprocess.Popen:
    """The generate stage in a child process (to kill it): its report is the last line of stdout."""
    root = Path(__file__).resolve().parents[1]
    return subprocess.Popen(
        [sys.executable, "-c", STAGE_SCRIPT, config.model_dump_json(), str(problems), str(out)],
        cwd=root,
        env={**os.environ, "PYTHONPATH": str(root)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--latency", type=float, default=0.1)
    parser.add_argument("--fault-rate", type=float, default=0.0)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--hang-s", type=float, default=30.0)
    parser.add_argument("--retry-after", type=float, default=0.05)
    parser.add_argument("--batch-s", type=float, default=0.2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    server = FakeOpenAI(
        latency=args.latency,
        fault_rate=args.fault_rate,
        hang_s=args.hang_s,
        retry_after=args.retry_after,
        batch_s=args.batch_s,
        seed=args.seed,
    ).start(args.port)
    print(server.base_url, flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        server.stop()


if __name__ == "__main__":
    main()
