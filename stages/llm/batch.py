"""`mode: batch`: the OpenAI Batch API, at half the online price, with a ledger that survives kill -9.

    jobs -> JSONL files (split at `batch.max_requests` lines / `batch.max_bytes`) -> Files API upload
         -> batches.create -> poll (progress) -> output and error files -> samples into the cache
         -> failed items into a follow-up batch (up to `batch.max_rounds` batches per item)

The ledger lives in the sample cache's SQLite file. A batch and its items are recorded *before*
anything is sent (state `prepared`), the file id right after the upload (`uploaded`), the batch id
right after creation (`submitted`), and `collected` once its results are in the cache. A run that
starts again first finishes the batches it finds there: it polls a submitted batch, and for an
uploaded one whose id was never recorded (killed between create and record) it looks the batch up
by the ledger id it put in the batch's metadata before creating another. An item in a batch that is
not collected is never put in a new one, so no item is submitted twice.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from stages.llm.backends.openai_backend import import_openai, parse_completion, request_body, request_headers
from stages.llm.cache import SampleCache
from stages.llm.config import LLMConfig
from stages.llm.progress import LiveProgress, Stats
from stages.llm.runner import Runner
from stages.llm.types import Job, RequestError, redact

ENDPOINT = "/v1/chat/completions"
ENDED = ("completed", "failed", "expired", "cancelled")
SCHEMA = """
CREATE TABLE IF NOT EXISTS batches (
    ledger_id TEXT PRIMARY KEY, round INTEGER NOT NULL, state TEXT NOT NULL, jsonl TEXT NOT NULL,
    file_id TEXT, batch_id TEXT, created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS batch_items (
    ledger_id TEXT NOT NULL, custom_id TEXT NOT NULL, job TEXT NOT NULL, outcome TEXT,
    PRIMARY KEY (ledger_id, custom_id)
);
"""


@dataclass
class Item:
    """One line of a batch: a job (one request), known by its custom id."""

    custom_id: str
    job: Job
    round: int = 0


def custom_id(job: Job) -> str:
    """`<prompt hash>:<samples>`: the same text as the X-Longcot-Samples header of online requests."""
    return request_headers(job, len(job.samples))["X-Longcot-Samples"]


class Ledger:
    """The batch tables of the sample cache: every state change is committed before the next step."""

    def __init__(self, cache: SampleCache):
        self.db = cache.db
        self.db.executescript(SCHEMA)

    def prepare(self, items: list[Item], jsonl: str, round_: int) -> str:
        ledger_id = uuid.uuid4().hex
        with self.db:  # one transaction: the batch and all its items, or nothing
            self.db.execute("BEGIN")
            self.db.execute(
                "INSERT INTO batches VALUES (?, ?, 'prepared', ?, NULL, NULL, ?)",
                (ledger_id, round_, jsonl, time.time()),
            )
            self.db.executemany(
                "INSERT INTO batch_items VALUES (?, ?, ?, NULL)",
                [(ledger_id, item.custom_id, _dump_job(item.job)) for item in items],
            )
        return ledger_id

    def set(self, ledger_id: str, **fields: str) -> None:
        columns = ", ".join(f"{name} = ?" for name in fields)
        self.db.execute(f"UPDATE batches SET {columns} WHERE ledger_id = ?", (*fields.values(), ledger_id))

    def open_batches(self) -> list[dict[str, Any]]:
        rows = self.db.execute(
            "SELECT ledger_id, round, state, jsonl, file_id, batch_id FROM batches "
            "WHERE state != 'collected' ORDER BY created"
        ).fetchall()
        return [
            dict(zip(("ledger_id", "round", "state", "jsonl", "file_id", "batch_id"), r, strict=True))
            for r in rows
        ]

    def items(self, ledger_id: str) -> dict[str, Job]:
        rows = self.db.execute("SELECT custom_id, job FROM batch_items WHERE ledger_id = ?", (ledger_id,))
        return {cid: _load_job(job) for cid, job in rows}

    def pending_keys(self) -> set[str]:
        """Cache keys of items in batches not yet collected: they must not go in another batch."""
        rows = self.db.execute(
            "SELECT i.job FROM batch_items i JOIN batches b USING (ledger_id) WHERE b.state != 'collected'"
        )
        return {key for (job,) in rows for key in json.loads(job)["keys"]}

    def collected(self, ledger_id: str, outcomes: dict[str, str]) -> None:
        with self.db:
            self.db.execute("BEGIN")
            self.db.executemany(
                "UPDATE batch_items SET outcome = ? WHERE ledger_id = ? AND custom_id = ?",
                [(outcome, ledger_id, cid) for cid, outcome in outcomes.items()],
            )
            self.db.execute("UPDATE batches SET state = 'collected' WHERE ledger_id = ?", (ledger_id,))


def _dump_job(job: Job) -> str:
    return json.dumps(
        {
            "uid": job.uid,
            "prompt_hash": job.prompt_hash,
            "messages": job.messages,
            "samples": job.samples,
            "keys": job.keys,
            "est_tokens": job.est_tokens,
        },
        ensure_ascii=False,
    )


def _load_job(text: str) -> Job:
    d = json.loads(text)
    return Job(
        d["uid"], d["prompt_hash"], d["messages"], tuple(d["samples"]), tuple(d["keys"]), d["est_tokens"]
    )


class BatchRun:
    """Submit, poll and collect batches for a stream of jobs; `run` returns {cache key: error detail}
    for items that failed for good, like the online runner."""

    def __init__(
        self,
        config: LLMConfig,
        cache: SampleCache,
        stats: Stats,
        progress: LiveProgress,
        base_url: str,
        api_key: str,
    ):
        openai = import_openai("mode: batch")
        self.config = config
        self.options = config.batch
        self.client = openai.OpenAI(base_url=base_url, api_key=api_key, max_retries=5, timeout=300)
        self.secrets = [api_key]
        self.ledger = Ledger(cache)
        # the online runner's commit/fail keep the cache, stats and progress the same in both modes
        self.recorder = Runner(None, cache, config, stats, progress)
        self.stats = stats
        self.progress = progress

    def run(self, jobs: Iterator[Job]) -> dict[str, dict[str, Any]]:
        retry: list[Item] = []
        for batch in self.ledger.open_batches():  # a previous run's batches first: resume, never resubmit
            retry += self._finish(batch)
        pending = self.ledger.pending_keys()
        fresh = [Item(custom_id(job), job) for job in jobs if not set(job.keys) & pending]
        items = fresh + retry
        while items := self._affordable(items):
            submitted = [self._submit(chunk, round_) for round_, chunk in self._chunks(items)]
            items = [item for batch in submitted for item in self._finish(batch)]
        return self.recorder.failures

    def _affordable(self, items: list[Item]) -> list[Item]:
        """The items whose worst case (prompt + max_tokens per sample, at the batch price) fits in
        what is left of `budget_usd`; the others are not sent (`budget_exhausted`)."""
        budget = self.config.budget_usd
        if budget is None:
            return items
        left = budget - self.stats.total_cost_usd
        kept = []
        for item in items:
            job = item.job
            worst = self.config.prices.cost(
                job.prompt_tokens_est, self.config.max_tokens * len(job.samples), True
            )
            if worst > left:
                self.recorder.stopping = self.stats.stopped = "budget"
                self.recorder.not_sent(job)
                continue
            left -= worst
            kept.append(item)
        return kept

    def _chunks(self, items: list[Item]) -> Iterator[tuple[int, list[Item]]]:
        """Items in batches within the API's limits on requests and bytes (one round per batch)."""
        for round_ in sorted({item.round for item in items}):
            chunk: list[Item] = []
            size = 0
            for item in (i for i in items if i.round == round_):
                line = len(self._line(item).encode()) + 1
                if chunk and (
                    len(chunk) >= self.options.max_requests or size + line > self.options.max_bytes
                ):
                    yield round_, chunk
                    chunk, size = [], 0
                chunk.append(item)
                size += line
            if chunk:
                yield round_, chunk

    def _line(self, item: Item) -> str:
        seed = None if self.config.seed is None else self.config.seed + item.job.samples[0]
        body = request_body(self.config, item.job, len(item.job.samples), seed)
        line = {"custom_id": item.custom_id, "method": "POST", "url": ENDPOINT, "body": body}
        return json.dumps(line, ensure_ascii=False)

    def _submit(self, items: list[Item], round_: int) -> dict[str, Any]:
        """Record the batch, then upload its file and create it, recording each id as it comes."""
        jsonl = "\n".join(self._line(item) for item in items) + "\n"
        ledger_id = self.ledger.prepare(items, jsonl, round_)
        batch = {"ledger_id": ledger_id, "round": round_, "state": "prepared", "jsonl": jsonl}
        batch |= {"file_id": None, "batch_id": None}
        self._send(batch)
        return batch

    def _send(self, batch: dict[str, Any]) -> None:
        if batch["file_id"] is None:
            upload = self.client.files.create(
                file=(f"longcot-{batch['ledger_id']}.jsonl", batch["jsonl"].encode()), purpose="batch"
            )
            batch["file_id"] = upload.id
            self.ledger.set(batch["ledger_id"], file_id=upload.id, state="uploaded")
        if batch["batch_id"] is None:
            existing = self._find(batch["ledger_id"])  # created by a run killed before it recorded the id
            created = existing or self.client.batches.create(
                input_file_id=batch["file_id"],
                endpoint=ENDPOINT,
                completion_window=self.options.completion_window,  # type: ignore[arg-type]
                metadata={"longcot_ledger": batch["ledger_id"]},
            )
            batch["batch_id"] = created.id
            self.ledger.set(batch["ledger_id"], batch_id=created.id, state="submitted")

    def _find(self, ledger_id: str) -> Any:
        for candidate in self.client.batches.list(limit=100):
            if (candidate.metadata or {}).get("longcot_ledger") == ledger_id:
                return candidate
        return None

    def _finish(self, batch: dict[str, Any]) -> list[Item]:
        """Send (if a previous run did not get that far), poll to the end, collect; returns the items
        to retry in a follow-up batch."""
        self._send(batch)
        status = self._poll(batch["batch_id"])
        return self._collect(batch, status)

    def _poll(self, batch_id: str) -> Any:
        while True:
            status = self.client.batches.retrieve(batch_id)
            counts = status.request_counts
            if counts is not None:
                self.progress.describe(
                    f"batch {batch_id[-8:]} {status.status} {counts.completed + counts.failed}/{counts.total}"
                )
            if status.status in ENDED:
                return status
            time.sleep(self.options.poll_s)

    def _collect(self, batch: dict[str, Any], status: Any) -> list[Item]:
        jobs = self.ledger.items(batch["ledger_id"])
        outcomes: dict[str, str] = {}
        retry: list[Item] = []
        results = self._lines(status.output_file_id) + self._lines(status.error_file_id)
        for line in results:
            cid = line.get("custom_id")
            if cid not in jobs or cid in outcomes:
                continue
            job = jobs[cid]
            error = self._commit_line(job, line)
            outcomes[cid] = "ok" if error is None else error.kind
            if error is not None:
                retry += self._retry_or_fail(job, error, cid, batch["round"])
        for cid, job in jobs.items():  # neither in the output nor in the errors: expired or cancelled
            if cid not in outcomes:
                error = RequestError(f"batch_{status.status}", f"no result in batch {status.id}", True)
                outcomes[cid] = error.kind
                retry += self._retry_or_fail(job, error, cid, batch["round"])
        self.ledger.collected(batch["ledger_id"], outcomes)
        return retry

    def _commit_line(self, job: Job, line: dict[str, Any]) -> RequestError | None:
        """Commit a result line's samples; the error of a failed line (None when it succeeded)."""
        response = line.get("response") or {}
        status = int(response.get("status_code") or 0)
        body = response.get("body")
        if status == 200 and isinstance(body, dict):
            try:
                completion = parse_completion(json.dumps(body), 0.0)
            except RequestError as exc:
                error = exc
            else:
                self.recorder.commit(job, completion, batch=True)
                return None
        else:
            message = json.dumps(line.get("error") or (body or {}).get("error") or line)[:300]
            error = RequestError(
                f"http_{status}" if status else "batch_error", redact(message, self.secrets), True
            )
            usage = (body or {}).get("usage") if isinstance(body, dict) else None
            if usage:
                error.usage = (int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0))
        self.stats.failed_attempts += 1
        if error.usage:
            self.stats.failed_tokens_in += error.usage[0]
            self.stats.failed_tokens_out += error.usage[1]
            self.stats.failed_cost_reported_usd += self.config.prices.cost(*error.usage, batch=True)
        return error

    def _retry_or_fail(self, job: Job, error: RequestError, cid: str, round_: int) -> list[Item]:
        if error.retryable and round_ + 1 < self.options.max_rounds:
            self.stats.retries[error.kind] += 1
            return [Item(cid, job, round_ + 1)]
        self.recorder.fail(job, error)
        return []

    def _lines(self, file_id: str | None) -> list[dict[str, Any]]:
        if not file_id:
            return []
        text = self.client.files.content(file_id).text
        lines = []
        for raw in text.splitlines():
            try:
                lines.append(json.loads(raw))
            except ValueError:
                continue  # an unreadable line: its item has no result and is retried
        return lines
