"""Writing question-answer conversations for captioned videos into a folder, incrementally and resumably.

The output folder:
    settings.json        what decides the output: the input file, video pattern, prompt, rules, seed, and the
                         generator's model and sampling. A rerun with other values is refused, naming them; how
                         it runs (concurrency, batch size, timeouts, retries, --limit) may change.
    conversations.jsonl  the training records, one per video that kept at least `min_pairs` pairs, in input order
                         (qwen-vl-finetune's layout; stave train reads it with `root:` the videos' folder):
                         {"id", "video", "caption", "conversations": [{"from": "human", "value": "<video>\\nQ1"},
                         {"from": "gpt", "value": "A1"}, {"from": "human", "value": "Q2"}, ...]}
    rejects.jsonl        every rejected pair or generation, for inspection: {"id", "reason", "question",
                         "answer", "detail"} (reasons: stave.caption_qa.validation)
    generations.jsonl    one line per video handled: {"id", "status": "kept" | "no_record" | "failed", "pairs",
                         "rejected": {reason: n}, "finish_reason", "attempts", "error"}; the newest line of an id
                         counts. A failed video (every attempt at the endpoint failed) is asked again by a rerun.
    summary.json         the counts over everything in the folder, and how the last run ran.

Every line is written with JSON's ASCII escapes: a line separator in a generated text (U+2028, U+0085), which
str.splitlines would take for the end of a line, stays inside its string for every reader.

Resuming: a video counts as done once its generations.jsonl line is written, which happens only after its
conversation and reject lines are on disk (fsynced every `sync_every` videos). A rerun first drops a line cut
by a kill and the conversation and reject lines of videos without a done line, then asks for every video not
done. Each video's generation is seeded by (seed, video id), so the files equal those of an uninterrupted run.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import Counter
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

from .. import __version__
from ..errors import StaveError
from ..runfiles import keep_jsonl_rows, read_jsonl, settings_differences
from ..training.checkpoints import write_json_atomic
from .generators import QAGenerator, Request
from .prompt import QAPrompt
from .sources import CaptionedVideo, read_captions
from .validation import QARules, validate_generation

CONVERSATIONS = "conversations.jsonl"
REJECTS = "rejects.jsonl"
LEDGER = "generations.jsonl"
SETTINGS = "settings.json"
SUMMARY = "summary.json"
DONE = ("kept", "no_record")


class MakeQAError(StaveError, ValueError):
    """A make-qa run that cannot start or go on (other settings in the folder, an endpoint that keeps failing)."""


def video_seed(seed: int, video_id: str) -> int:
    """The seed of one video's generation: from the run's seed and the video's id only (31 bits: every server
    takes it)."""
    digest = hashlib.sha256(f"{seed}:{video_id}".encode()).digest()
    return int.from_bytes(digest[:8], "little") % 2**31


def training_record(item: CaptionedVideo, pairs: list[tuple[str, str]]) -> dict[str, Any]:
    """A video's conversation: its pairs as turns, the video placeholder before the first question."""
    turns = []
    for i, (question, answer) in enumerate(pairs):
        turns.append({"from": "human", "value": f"<video>\n{question}" if i == 0 else question})
        turns.append({"from": "gpt", "value": answer})
    return {"id": item.id, "video": item.video, "caption": item.caption, "conversations": turns}


def make_qa(
    captions: str | Path,
    out: str | Path,
    generator: QAGenerator,
    *,
    prompt: QAPrompt | None = None,
    rules: QARules | None = None,
    seed: int = 0,
    video_pattern: str | None = None,
    limit: int | None = None,
    max_consecutive_failures: int = 16,
    sync_every: int = 32,
    progress: bool = True,
) -> dict[str, Any]:
    """Ask `generator` for QA pairs (`prompt`, default QAPrompt()) about every captioned video of `captions`
    (stave.caption_qa.sources) not yet done in `out`, check them against `rules` (default QARules();
    stave.caption_qa.validation) and write the folder described above. Returns the summary (also in
    summary.json). Stops with a MakeQAError after `max_consecutive_failures` videos in a row whose every
    attempt failed (what was done is kept; a rerun goes on)."""
    from tqdm.auto import tqdm

    prompt = prompt or QAPrompt()
    rules = rules or QARules()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    settings = {
        "input": str(captions),
        "video_pattern": video_pattern,
        "prompt": prompt.to_dict(),
        "rules": rules.to_dict(),
        "seed": seed,
        "generator": generator.settings(),
        "stave": __version__,
    }
    done = {row["id"] for row in _latest(out).values() if row["status"] in DONE}
    total = done_in_input = 0
    for item in read_captions(captions, video_pattern=video_pattern, limit=limit):  # every row checked first
        total += 1
        done_in_input += item.id in done
    differ = settings_differences(out / SETTINGS, settings)
    if differ:
        raise MakeQAError(f"{out} holds QA made with other settings ({'; '.join(differ)}); use another folder")
    for name in (CONVERSATIONS, REJECTS):  # lines of videos whose done line a kill kept from being written
        keep_jsonl_rows(out / name, lambda row: row["id"] in done)

    def requests() -> Iterator[Request]:
        for item in read_captions(captions, video_pattern=video_pattern, limit=limit):
            if item.id not in done:
                yield Request(key=item, messages=prompt.messages(item.caption), seed=video_seed(seed, item.id))

    bar = tqdm(total=total - done_in_input, desc="make-qa", disable=not progress)
    newly_done = failed_in_a_row = 0
    waiting: list[dict[str, Any]] = []
    with (
        open(out / CONVERSATIONS, "a", encoding="utf-8") as conversations,
        open(out / REJECTS, "a", encoding="utf-8") as rejects,
        open(out / LEDGER, "a", encoding="utf-8") as ledger,
    ):

        def commit() -> None:  # data lines on disk before the lines that declare their videos done
            for handle in (conversations, rejects):
                handle.flush()
                os.fsync(handle.fileno())
            ledger.writelines(json.dumps(entry) + "\n" for entry in waiting)
            ledger.flush()
            os.fsync(ledger.fileno())
            waiting.clear()

        try:
            # closing: a stop here (an error, Ctrl-C) also cancels the generator's requests still waiting to be sent
            with closing(generator.generate(requests())) as completions:
                for completion in completions:
                    item: CaptionedVideo = completion.request.key
                    entry = _handle(item, completion, rules, conversations, rejects)
                    waiting.append(entry)
                    newly_done += entry["status"] in DONE
                    failed_in_a_row = failed_in_a_row + 1 if entry["status"] == "failed" else 0
                    bar.update(1)
                    if len(waiting) >= sync_every:
                        commit()
                    if failed_in_a_row >= max_consecutive_failures:
                        raise MakeQAError(
                            f"{failed_in_a_row} videos in a row failed at every attempt; the last: {item.where}: "
                            f"{entry['error']} (what was done is kept in {out}; rerun to go on)"
                        )
        finally:
            commit()
            bar.close()
            summary = summarize(out)
            summary["run"] = {
                "videos_in_input": total,
                "pending": total - done_in_input - newly_done,
                "limit": limit,
                **generator.run_settings(),
            }
            write_json_atomic(out / SUMMARY, summary)
    return summary


def _handle(item: CaptionedVideo, completion, rules: QARules, conversations, rejects) -> dict[str, Any]:
    """Check one completion, write its record and rejects; returns its ledger entry."""
    entry: dict[str, Any] = {"id": item.id, "attempts": completion.attempts}
    if completion.text is None:
        return {**entry, "status": "failed", "error": completion.error}
    verdict = validate_generation(completion.text, item.caption, rules)
    for reject in verdict.rejects:
        rejects.write(json.dumps({"id": item.id, **reject.to_dict()}) + "\n")
    if verdict.pairs:
        conversations.write(json.dumps(training_record(item, verdict.pairs)) + "\n")
    return {
        **entry,
        "status": "kept" if verdict.pairs else "no_record",
        "pairs": len(verdict.pairs),
        "rejected": dict(Counter(reject.reason for reject in verdict.rejects)),
        "finish_reason": completion.finish_reason,
    }


def _latest(out: Path) -> dict[str, dict[str, Any]]:
    """The newest generations.jsonl line of every video (a line cut by a kill removed)."""
    return {row["id"]: row for row in read_jsonl(out / LEDGER, repair=True)}


def summarize(out: str | Path) -> dict[str, Any]:
    """Counts over an output folder: videos handled, records and pairs kept, videos without a record, failed
    videos (to be asked again), generations cut at max_new_tokens, rejects by reason, and the settings."""
    out = Path(out)
    latest = _latest(out).values()
    status = Counter(row["status"] for row in latest)
    rejected: Counter[str] = Counter()
    for row in latest:
        rejected.update(row.get("rejected", {}))
    return {
        "videos_handled": len(latest),
        "records": status["kept"],
        "pairs": sum(row.get("pairs", 0) for row in latest),
        "videos_without_record": status["no_record"],
        "videos_failed": status["failed"],
        "cut_at_max_new_tokens": sum(row.get("finish_reason") == "length" for row in latest),
        "rejected": dict(sorted(rejected.items())),
        "settings": json.loads((out / SETTINGS).read_text(encoding="utf-8")) if (out / SETTINGS).is_file() else None,
    }
