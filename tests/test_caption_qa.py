"""`stave make-qa` (stave.caption_qa): captions in (WebVid's CSV, CSV/JSONL), QA conversations out. A fake
OpenAI-compatible server (standard library, 127.0.0.1) answers well-formed, malformed, slow and failing
responses; a tiny random causal LM runs end to end; a killed run resumes to the uninterrupted run's files; every
validation rule is checked on its own."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import torch

from stave.caption_qa import (
    CaptionSourceError,
    EndpointGenerator,
    GeneratorError,
    LocalGenerator,
    MakeQAError,
    QAPrompt,
    QARules,
    Request,
    Sampling,
    make_qa,
    read_captions,
    validate_generation,
    video_seed,
)
from stave.cli import main

ROOT = Path(__file__).resolve().parents[1]
WEBVID_HEADER = ["videoid", "contentUrl", "duration", "page_dir", "name"]


# --- a fake OpenAI-compatible server -----------------------------------------------------------------------


def good_pairs(caption: str, seed: int) -> list[dict[str, str]]:
    """A well-formed answer that passes every rule; it depends on the caption and the request's seed."""
    return [
        {"question": "What is happening here?", "answer": f"{caption}."},
        {"question": "Where could this scene take place?", "answer": f"Somewhere fitting, take {seed}."},
        {"question": "How many things move?", "answer": f"About {len(caption.split())} of them."},
    ]


class FakeServer:
    """Answers /v1/chat/completions. What it does depends on words in the caption (the first quoted line of the
    user message): SLOW (first attempt sleeps past the client's timeout), FLAKY (HTTP 503 twice), DOWN (always
    HTTP 500), HOLD (answers after 0.4 s),
    BADBODY (first answer not JSON), MALFORMED (text that is no JSON list), REFUSE (HTTP 400), RAW:...
    (the text after RAW: is the model's answer). Records every request body; counts requests in flight. With
    `gather`, each request waits (up to 10 s) until that many are in flight: how a test sees the concurrency
    reach its limit on a busy machine."""

    def __init__(self, delay: float = 0.0, gather: int = 0) -> None:
        self.delay = delay
        self.gather = gather
        self.requests: list[dict] = []
        self.attempts: dict[str, int] = {}
        self.in_flight = self.most_in_flight = 0
        self.lock = threading.Condition()
        self.down = True
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def do_POST(self):  # noqa: N802 (http.server's name)
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                body["authorization (header)"] = self.headers.get("Authorization")
                with server.lock:
                    server.in_flight += 1
                    server.most_in_flight = max(server.most_in_flight, server.in_flight)
                    server.lock.notify_all()
                    server.lock.wait_for(lambda: server.in_flight >= server.gather, timeout=10)
                try:
                    status, payload = server.answer(self.path, body)
                finally:  # before the answer leaves: the client cannot send its next request while counted here
                    with server.lock:
                        server.in_flight -= 1
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout)
                    pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def answer(self, path: str, body: dict) -> tuple[int, bytes]:
        user = body["messages"][-1]["content"]
        caption = user.split('"')[1]
        with self.lock:
            self.requests.append(body)
            attempt = self.attempts[caption] = self.attempts.get(caption, 0) + 1
        time.sleep(self.delay)
        if path != "/v1/chat/completions":
            return 404, b'{"error": "no such route"}'
        if "REFUSE" in caption:
            return 400, b'{"error": {"message": "The model `nope` does not exist."}}'
        if "HOLD" in caption:
            time.sleep(0.4)
        if "DOWN" in caption and self.down or "FLAKY" in caption and attempt <= 2:
            return (500 if "DOWN" in caption else 503), b'{"error": "overloaded"}'
        if "SLOW" in caption and attempt == 1:
            time.sleep(1.5)
        if "BADBODY" in caption and attempt == 1:
            return 200, b"<html>proxy error</html>"
        if caption.startswith("RAW:"):
            text = caption[4:].replace("'", '"')
        elif "UNICODE" in caption:
            text = json.dumps([qa("Qu'est-ce qu'on dit ?", "Caf\u00e9\u2028au lait."), qa("And then?", "Na\u0085ve.")])
        elif "MALFORMED" in caption:
            text = "Sure! 1. What is shown? A dog. 2. Where? Outside."
        else:
            text = "```json\n" + json.dumps(good_pairs(caption, body["seed"])) + "\n```"
        choice = {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
        return 200, json.dumps({"choices": [choice]}).encode()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    fake = FakeServer()
    yield fake
    fake.close()


def endpoint(server: FakeServer, **kwargs) -> EndpointGenerator:
    settings = {"timeout": 0.5, "retries": 2, "backoff": 0.01, "concurrency": 4, **kwargs}
    return EndpointGenerator(server.url, "fake-qwen", sampling=Sampling(temperature=0.7, top_p=0.8), **settings)


def write_webvid(path: Path, captions: list[str], first_id: int = 1000) -> Path:
    """A captions file in WebVid's published layout (results_2M_val.csv's columns)."""
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(WEBVID_HEADER)
        for i, caption in enumerate(captions):
            videoid = first_id + i
            url = f"https://ak.picdn.net/shutterstock/videos/{videoid}/preview/stock-footage-{i}.mp4"
            page_dir = f"{(i // 50) * 50 + 1:06d}_{(i // 50 + 1) * 50:06d}"
            writer.writerow([videoid, url, f"PT00H00M{10 + i % 40:02d}S", page_dir, caption])
    return path


def rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


# --- sources ----------------------------------------------------------------------------------------------


def test_webvid_csv_gives_ids_captions_and_the_download_scripts_video_paths(tmp_path):
    path = write_webvid(tmp_path / "results_2M_val.csv", ["Aerial shot,  winter forest", 'A "quoted" cat, sleeping'])
    items = list(read_captions(path))
    assert [(i.id, i.video, i.caption) for i in items] == [
        ("1000", "000001_000050/1000.mp4", "Aerial shot, winter forest"),
        ("1001", "000001_000050/1001.mp4", 'A "quoted" cat, sleeping'),
    ]
    assert items[1].where == f"{path}:line 3"
    assert [i.video for i in read_captions(path, video_pattern="{videoid}.mp4", limit=1)] == ["1000.mp4"]


def test_plain_jsonl_and_csv_of_video_and_caption(tmp_path):
    jsonl = tmp_path / "caps.jsonl"
    jsonl.write_text('{"video": "a/1.mp4", "caption": "a dog"}\n\n{"video": "b/2.mp4", "caption": "a cat"}\n')
    assert [(i.id, i.video) for i in read_captions(jsonl)] == [("a/1.mp4", "a/1.mp4"), ("b/2.mp4", "b/2.mp4")]
    plain = tmp_path / "caps.csv"
    plain.write_text("id,video,caption\nx,1.mp4,a dog\n")
    assert [(i.id, i.video, i.caption) for i in read_captions(plain)] == [("x", "1.mp4", "a dog")]


WEBVID_CSV = ",".join(WEBVID_HEADER) + "\n"
FIRST_JSONL = '{"video": "1.mp4", "caption": "x"}\n'


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("a.csv", "videoid,contentUrl,name\n1,u,cap\n", r"no field \['caption', 'video'\].*WebVid's CSV has"),
        ("b.csv", WEBVID_CSV + "1,u,PT1S,p,\n", r"b\.csv:line 2\.name: the caption is missing, empty"),
        ("c.csv", WEBVID_CSV + "1,u,PT1S,p,cap\n1,u,PT1S,p,cap\n", r"c\.csv:line 3: id '1' appears again \(first at "),
        ("d.csv", WEBVID_CSV + "1,u,PT1S,p\n", r"d\.csv:line 2: fewer values"),
        ("e.jsonl", FIRST_JSONL + '{"video": "2.mp4"\n', r"e\.jsonl:line 2: not valid JSON"),
        ("f.jsonl", FIRST_JSONL + '{"video": "2.mp4", "caption": 3}\n', r"f\.jsonl:line 2\.caption"),
        ("g.txt", "x", r"g\.txt: captions are read from \.csv"),
    ],
)
def test_bad_caption_files_are_named_with_line_and_field(tmp_path, name, text, message):
    (tmp_path / name).write_text(text)
    with pytest.raises(CaptionSourceError, match=message):
        list(read_captions(tmp_path / name))


# --- validation rules, one by one ---------------------------------------------------------------------------

CAPTION = "A brown dog runs along a sandy beach at sunset"
GOOD = [
    {"question": "What animal is in the scene?", "answer": "A brown dog."},
    {"question": "Where is it running?", "answer": "Along a sandy beach."},
]


def qa(question: str, answer: str) -> dict[str, str]:
    return {"question": question, "answer": answer}


TIME = "What time of day is it?"
DOG = "Does a brown dog run along a sandy beach at sunset?"
# (reason, an offending pair, the same pair made acceptable): the rule must catch the first and pass the second
RULE_CASES = [
    ("not_a_pair", {"question": TIME, "reply": "Sunset."}, qa(TIME, "Sunset.")),
    ("not_a_pair", f"{TIME} Sunset.", qa(TIME, "Sunset.")),
    ("not_a_pair", qa(TIME, ["Sunset."]), qa(TIME, "Sunset.")),
    ("empty", qa(TIME, "  "), qa(TIME, "Sunset.")),
    ("empty", qa(" ", "Sunset."), qa(TIME, "Sunset.")),
    ("holds_placeholder", qa(f"<video>\n{TIME}", "Sunset."), qa(TIME, "Sunset.")),
    ("holds_placeholder", qa(TIME, "Sunset, as <image> shows."), qa(TIME, "Sunset, as the sky shows.")),
    ("question_too_long", qa("What time of day is it " + "really " * 60 + "?", "Sunset."), qa(TIME, "Sunset.")),
    ("answer_too_long", qa(TIME, "Sunset " * 120), qa(TIME, "Sunset " * 10)),
    ("mentions_caption", qa(TIME, "The caption says sunset."), qa(TIME, "It is sunset.")),
    ("restates_caption", qa(DOG, "Yes, a brown dog runs along a sandy beach at sunset."), qa(DOG, "Yes, a fast one.")),
    ("restates_caption", qa("Is the brown dog running along the sandy beach at sunset?", "Yes."), qa("Sandy?", "Yes.")),
    ("near_duplicate", qa("What animal is in the scene ?!", "A dog."), qa("What colour is the animal?", "Brown.")),
    ("near_duplicate", qa("What animal is in this scene?", "A dog."), qa("What is the weather like?", "Clear.")),
]


@pytest.mark.parametrize(("reason", "bad", "fixed"), RULE_CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(RULE_CASES)])
def test_each_rule_rejects_its_case_and_passes_the_fixed_pair(reason, bad, fixed):
    rules = QARules(min_pairs=2, max_pairs=8, max_question_chars=200, max_answer_chars=400)
    verdict = validate_generation(json.dumps([*GOOD, bad]), CAPTION, rules)
    assert [r.reason for r in verdict.rejects] == [reason], verdict.rejects
    assert verdict.pairs == [(p["question"], p["answer"]) for p in GOOD]
    passed = validate_generation(json.dumps([*GOOD, fixed]), CAPTION, rules)
    assert passed.rejects == [] and len(passed.pairs) == 3


def test_whole_generation_rules_malformed_max_pairs_and_too_few_pairs():
    malformed = validate_generation("Sure! Q: what? A: a dog.", CAPTION)
    assert [r.reason for r in malformed.rejects] == ["malformed"] and malformed.pairs == []
    assert "no JSON list" in malformed.rejects[0].detail and "Sure!" in malformed.rejects[0].detail
    assert [r.reason for r in validate_generation('{"question": "a", "answer": "b"}', CAPTION).rejects] == ["malformed"]
    cut = validate_generation('[{"question": "What animal?", "answer": "A d', CAPTION)  # cut at max_new_tokens
    assert [r.reason for r in cut.rejects] == ["malformed"] and "not valid JSON" in cut.rejects[0].detail
    chatty = validate_generation("Here you go:\n" + json.dumps(GOOD) + "\nHope this helps!", CAPTION)
    assert len(chatty.pairs) == 2 and chatty.rejects == []  # the list inside the text is read

    three = [*GOOD, {"question": "What time of day is it?", "answer": "Sunset."}]
    capped = validate_generation(json.dumps(three), CAPTION, QARules(min_pairs=1, max_pairs=2))
    assert len(capped.pairs) == 2 and [r.reason for r in capped.rejects] == ["beyond_max_pairs"]
    few = validate_generation(json.dumps(GOOD[:1] + [{"question": "", "answer": "x"}]), CAPTION, QARules(min_pairs=2))
    assert few.pairs == [] and [r.reason for r in few.rejects] == ["empty", "too_few_pairs"]


# --- the endpoint ------------------------------------------------------------------------------------------


def test_endpoint_well_formed_malformed_slow_and_failing_responses(server, tmp_path):
    captions = ["a dog runs on a beach", "MALFORMED a cat", "SLOW a bird flies", "FLAKY a car drives",
                "BADBODY a boat sails", "DOWN a man walks", "a child laughs loudly"]  # fmt: skip
    path = write_webvid(tmp_path / "caps.csv", captions)
    out = tmp_path / "qa"
    summary = make_qa(path, out, endpoint(server), prompt=QAPrompt(pairs=3), seed=7, progress=False)

    assert summary["run"]["videos_in_input"] == 7 and summary["run"]["pending"] == 1
    assert summary["records"] == 5 and summary["pairs"] == 15
    assert summary["videos_without_record"] == 1 and summary["videos_failed"] == 1
    assert summary["rejected"] == {"malformed": 1}
    ledger = {row["id"]: row for row in rows(out / "generations.jsonl")}
    assert [ledger[str(1000 + i)]["attempts"] for i in range(7)] == [1, 1, 2, 3, 2, 3, 1]  # retries: 2 -> 3 attempts
    assert ledger["1005"]["status"] == "failed" and "HTTP 500" in ledger["1005"]["error"]
    assert "no answer within 0.5 s" not in ledger["1002"].get("error", "")  # the slow one succeeded on retry

    records = rows(out / "conversations.jsonl")
    assert [r["id"] for r in records] == ["1000", "1002", "1003", "1004", "1006"]  # input order, not finishing order
    first = records[0]
    seed = video_seed(7, "1000")
    assert first["video"] == "000001_000050/1000.mp4" and first["caption"] == "a dog runs on a beach"
    assert first["conversations"] == [
        {"from": "human", "value": "<video>\nWhat is happening here?"},
        {"from": "gpt", "value": "a dog runs on a beach."},
        {"from": "human", "value": "Where could this scene take place?"},
        {"from": "gpt", "value": f"Somewhere fitting, take {seed}."},
        {"from": "human", "value": "How many things move?"},
        {"from": "gpt", "value": "About 6 of them."},
    ]
    assert [r["reason"] for r in rows(out / "rejects.jsonl")] == ["malformed"]
    assert rows(out / "rejects.jsonl")[0]["id"] == "1001"

    body = server.requests[0]
    assert body["model"] == "fake-qwen" and body["temperature"] == 0.7 and body["top_p"] == 0.8
    assert body["max_tokens"] == 1024 and body["messages"][0]["role"] == "system"
    assert "Write 3 different questions" in body["messages"][1]["content"]
    assert {b["seed"] for b in server.requests if "dog" in b["messages"][1]["content"]} == {seed}
    settings = json.loads((out / "settings.json").read_text())
    sampling = {"temperature": 0.7, "top_p": 0.8, "max_new_tokens": 1024}
    assert settings["generator"] == {"kind": "endpoint", "model": "fake-qwen", "sampling": sampling}
    assert settings["seed"] == 7 and settings["prompt"]["pairs"] == 3 and "{caption}" in settings["prompt"]["user"]

    # stave train reads the records as they are (video paths relative to the videos' folder)
    from stave.training.data import read_records
    from stave.training.recipe import DatasetSpec

    read = read_records(DatasetSpec(path=str(out / "conversations.jsonl"), root=str(tmp_path / "videos")))
    assert len(read) == 5 and read[0].messages[0]["content"][0] == {"type": "video", "video": "000001_000050/1000.mp4"}
    assert [m["role"] for m in read[0].messages] == ["user", "assistant"] * 3

    # a rerun asks only the failed video again, and keeps what was done
    server.down = False
    asked = len(server.requests)
    again = make_qa(path, out, endpoint(server), prompt=QAPrompt(pairs=3), seed=7, progress=False)
    assert len(server.requests) == asked + 1 and again["records"] == 6 and again["run"]["pending"] == 0
    assert [r["id"] for r in rows(out / "conversations.jsonl")][-1] == "1005"


def test_requests_run_concurrently_within_the_limit(tmp_path):
    slow = FakeServer(gather=3)
    try:
        path = write_webvid(tmp_path / "caps.csv", [f"scene number {i}" for i in range(12)])
        make_qa(path, tmp_path / "qa", endpoint(slow, concurrency=3, timeout=30), progress=False)
    finally:
        slow.close()
    assert slow.most_in_flight == 3
    assert [r["id"] for r in rows(tmp_path / "qa" / "conversations.jsonl")] == [str(1000 + i) for i in range(12)]


def test_a_refused_request_stops_the_run_with_the_servers_message(server, tmp_path, capsys):
    path = write_webvid(tmp_path / "caps.csv", ["a dog", "REFUSE a cat", "a bird"])
    with pytest.raises(GeneratorError, match=r"HTTP 400: .*The model `nope` does not exist"):
        make_qa(path, tmp_path / "qa", endpoint(server, concurrency=1), progress=False)
    assert [r["id"] for r in rows(tmp_path / "qa" / "generations.jsonl")] == ["1000"]  # what was done is kept
    flags = ["--endpoint", server.url, "--model", "nope", "--out", str(tmp_path / "cli"), "--concurrency", "1"]
    assert main(["make-qa", str(path), *flags]) == 2
    err = capsys.readouterr().err.split("\n", 1)[1]  # after the progress bar's line
    assert err.startswith("stave make-qa: error: http://127.0.0.1:") and "does not exist" in err
    assert err.count("\n") == 1


def test_an_endpoint_that_keeps_failing_stops_the_run(server, tmp_path):
    captions = [f"DOWN scene {i}" for i in range(3)] + ["DOWN HOLD scene 3", "DOWN HOLD scene 4", "DOWN scene 5"]
    path = write_webvid(tmp_path / "caps.csv", captions)
    with pytest.raises(MakeQAError, match=r"3 videos in a row failed at every attempt; the last: .*line 4: HTTP 500"):
        make_qa(path, tmp_path / "qa", endpoint(server, concurrency=2, retries=0), max_consecutive_failures=3,
                progress=False)  # fmt: skip
    assert [row["status"] for row in rows(tmp_path / "qa" / "generations.jsonl")] == ["failed"] * 3
    time.sleep(0.6)
    # at the stop both workers are held by videos 3 and 4 (or 4 is still queued) and video 5 is queued: the queued
    # ones are cancelled, never asked
    asked = [body["messages"][-1]["content"].split('"')[1] for body in server.requests]
    assert "DOWN scene 5" not in asked and len(asked) <= 5, asked


def test_a_rerun_with_other_settings_is_refused(server, tmp_path):
    path = write_webvid(tmp_path / "caps.csv", ["a dog runs", "a cat sleeps"])
    make_qa(path, tmp_path / "qa", endpoint(server), seed=1, progress=False)
    with pytest.raises(MakeQAError, match=r"other settings \(seed: 1 there, 2 now\)"):
        make_qa(path, tmp_path / "qa", endpoint(server), seed=2, progress=False)
    make_qa(path, tmp_path / "qa", endpoint(server, concurrency=1, timeout=5), seed=1, progress=False)  # run settings


KILLED_RUN = """
import sys
from stave.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_a_killed_run_resumes_to_the_files_of_an_uninterrupted_run(tmp_path):
    captions = [f"scene {i} with {'MALFORMED ' if i % 7 == 3 else ''}people walking" for i in range(80)]
    path = write_webvid(tmp_path / "caps.csv", captions)
    slow = FakeServer(delay=0.05)
    try:
        flags = ["--endpoint", slow.url, "--model", "fake", "--concurrency", "2", "--seed", "3"]
        killed = tmp_path / "killed"
        process = subprocess.Popen(
            [sys.executable, "-c", KILLED_RUN, "make-qa", str(path), "--out", str(killed), *flags],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env={**os.environ, "TQDM_DISABLE": "1"},
        )  # fmt: skip
        deadline = time.monotonic() + 240
        while not (killed / "generations.jsonl").is_file() or not (killed / "generations.jsonl").stat().st_size:
            assert process.poll() is None, process.stderr.read().decode()
            assert time.monotonic() < deadline
            time.sleep(0.01)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=60)
        done = rows(killed / "generations.jsonl")
        assert 0 < len(done) < 80
        with open(killed / "generations.jsonl", "a") as handle:  # a line cut by the kill, and its video's record
            handle.write('{"id": "1079", "status": "ke')
        with open(killed / "conversations.jsonl", "a") as handle:
            handle.write('{"id": "1079", "video": "000051_000100/1079.mp4", "conversations": [{"from"')
        asked_before = len(slow.requests)
        main(["make-qa", str(path), "--out", str(killed), *flags])
        asked_again = [b["messages"][1]["content"].split('"')[1] for b in slow.requests[asked_before:]]
        assert not {c for c in asked_again} & {captions[int(row["id"]) - 1000] for row in done}  # done: not asked again
        uninterrupted = tmp_path / "whole"
        main(["make-qa", str(path), "--out", str(uninterrupted), *flags, "--concurrency", "5"])
    finally:
        slow.close()
    for name in ("conversations.jsonl", "rejects.jsonl"):
        assert (killed / name).read_bytes() == (uninterrupted / name).read_bytes(), name
    assert len(rows(killed / "conversations.jsonl")) == 80 - len([c for c in captions if "MALFORMED" in c])
    summary = json.loads((killed / "summary.json").read_text())
    assert summary["videos_handled"] == 80 and summary["run"]["pending"] == 0


# --- a local model -----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_lm(tmp_path_factory) -> Path:
    """A tiny random Qwen2 causal LM with stave's word-level tokenizer (chat template included), saved."""
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from stave.caption_qa.prompt import DEFAULT_SYSTEM, DEFAULT_USER
    from stave.tokenizer import build_word_tokenizer, save_tokenizer, split_words

    tokenizer = build_word_tokenizer(split_words(DEFAULT_SYSTEM + DEFAULT_USER + " ".join(LOCAL_CAPTIONS)))
    config = Qwen2Config(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=512, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id, tie_word_embeddings=False,
    )  # fmt: skip
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("tiny-lm")
    Qwen2ForCausalLM(config).save_pretrained(folder)
    save_tokenizer(tokenizer, folder)
    return folder


LOCAL_CAPTIONS = ["a dog runs", "an old man slowly walks his brown dog along the beach at sunset", "rain"]


def local_requests(seed: int = 0) -> list[Request]:
    prompt = QAPrompt(pairs=2)
    return [Request(i, prompt.messages(c), video_seed(seed, str(i))) for i, c in enumerate(LOCAL_CAPTIONS)]


def test_local_model_samples_each_video_from_its_own_seed_whatever_the_batch(tiny_lm):
    sampling = Sampling(temperature=1.0, top_p=0.95, max_new_tokens=8)
    batched = LocalGenerator.from_pretrained(str(tiny_lm), sampling=sampling, batch_size=3, device="cpu")
    alone = LocalGenerator.from_pretrained(str(tiny_lm), sampling=sampling, batch_size=1, device="cpu")
    completions = list(batched.generate(local_requests()))
    texts = [c.text for c in completions]
    assert len(set(texts)) == 3 and all(texts)  # mixed prompt lengths, left padded in one batch
    assert {c.finish_reason for c in completions} <= {"stop", "length"}
    assert [c.text for c in alone.generate(local_requests())] == texts  # each row is its own batch of one
    assert [c.text for c in batched.generate(local_requests())] == texts  # same seed, same result
    assert [c.text for c in batched.generate(local_requests(seed=1))] != texts


def test_local_model_at_temperature_zero_is_the_models_own_greedy_search(tiny_lm):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    sampling = Sampling(temperature=0, max_new_tokens=8)
    greedy = LocalGenerator.from_pretrained(str(tiny_lm), sampling=sampling, device="cpu")
    request = local_requests()[1]
    [completion] = greedy.generate([request])
    tokenizer = AutoTokenizer.from_pretrained(tiny_lm)
    model = AutoModelForCausalLM.from_pretrained(tiny_lm)
    text = tokenizer.apply_chat_template(request.messages, add_generation_prompt=True, tokenize=False)
    ids = tokenizer(text, return_tensors="pt", add_special_tokens=False, return_token_type_ids=False)
    out = model.generate(**ids, max_new_tokens=8, do_sample=False, pad_token_id=tokenizer.pad_token_id)
    new = out[0, ids["input_ids"].shape[1] :].tolist()
    new = new[: new.index(tokenizer.eos_token_id)] if tokenizer.eos_token_id in new else new
    assert completion.text == tokenizer.decode(new, skip_special_tokens=True) and completion.text


def test_make_qa_with_a_local_model_end_to_end(tiny_lm, tmp_path, capsys):
    path = tmp_path / "caps.jsonl"
    lines = (json.dumps({"video": f"v{i}.mp4", "caption": c}) + "\n" for i, c in enumerate(LOCAL_CAPTIONS))
    path.write_text("".join(lines))
    flags = ["--local-model", str(tiny_lm), "--device", "cpu", "--max-new-tokens", "10", "--batch-size", "2"]
    flags += ["--seed", "5"]
    assert main(["make-qa", str(path), "--out", str(tmp_path / "a"), *flags]) == 0
    out = capsys.readouterr().out
    assert "0 conversations (0 pairs) for 3 videos handled of 3" in out and "malformed 3" in out  # random words
    rejects = rows(tmp_path / "a" / "rejects.jsonl")
    assert [r["id"] for r in rejects] == ["v0.mp4", "v1.mp4", "v2.mp4"]
    assert all(r["reason"] == "malformed" for r in rejects)
    settings = json.loads((tmp_path / "a" / "settings.json").read_text())
    assert settings["generator"]["kind"] == "local" and settings["generator"]["model"] == str(tiny_lm)
    assert settings["generator"]["sampling"] == {"temperature": 0.7, "top_p": 0.9, "max_new_tokens": 10}
    assert main(["make-qa", str(path), "--out", str(tmp_path / "b"), *flags, "--batch-size", "3"]) == 0
    assert (tmp_path / "a" / "rejects.jsonl").read_bytes() == (tmp_path / "b" / "rejects.jsonl").read_bytes()
    assert main(["make-qa", str(path), "--out", str(tmp_path / "a"), *flags, "--seed", "6"]) == 2
    assert "seed: 5 there, 6 now" in capsys.readouterr().err


# --- the recipe that mixes the generated QA with SSv2 ------------------------------------------------------


def test_the_webvid_qa_and_ssv2_recipe_mixes_both_by_ratio(server, tmp_path):
    from stave.training import load_recipe
    from stave.training.data import load_datasets

    path = write_webvid(tmp_path / "caps.csv", [f"a scene with {n} people" for n in range(10)])
    make_qa(path, tmp_path / "qa", endpoint(server), progress=False)
    templates = ["Pulling [something] from left to right", "Pushing [something] so it spins"] * 20
    ssv2 = [{"id": str(i), "label": "x", "template": t, "placeholders": ["x"]} for i, t in enumerate(templates)]
    (tmp_path / "train.json").write_text(json.dumps(ssv2))
    for folder in ("webvid", "ssv2"):
        (tmp_path / folder).mkdir()
    paths = [
        f"data.datasets.0.path={tmp_path / 'qa' / 'conversations.jsonl'}",
        f"data.datasets.0.root={tmp_path / 'webvid'}",
        f"data.datasets.1.path={tmp_path / 'train.json'}",
        f"data.datasets.1.root={tmp_path / 'ssv2'}",
    ]
    recipe = load_recipe(ROOT / "configs" / "staveq2-2b-webvidqa-ssv2.yaml", paths)
    webvid, ssv2_spec = recipe.data.datasets
    records = load_datasets(recipe.data.datasets, recipe.data.seed, recipe.data.video)
    from_qa = [r for r in records if r.source.startswith(str(tmp_path / "qa"))]
    assert len(from_qa) == round(10 * webvid.ratio)
    assert len(records) - len(from_qa) == round(40 * ssv2_spec.ratio)
    assert ssv2_spec.format == "ssv2" and from_qa[0].messages[0]["content"][0]["type"] == "video"


# --- run files (shared with stave eval) ---------------------------------------------------------------------


def test_run_files_drop_a_cut_last_line_and_refuse_a_bad_one_before_it(tmp_path):
    from stave.runfiles import RunFileError, keep_jsonl_rows, read_jsonl

    path = tmp_path / "rows.jsonl"
    lines = [json.dumps({"id": i, "text": f"line\u2028separator {i}"}, ensure_ascii=False) + "\n" for i in range(3)]
    path.write_text("".join(lines) + '{"id": 3, "te', encoding="utf-8")
    assert [row["id"] for row in read_jsonl(path)] == [0, 1, 2]  # U+2028 inside a value does not end a line
    assert path.read_text(encoding="utf-8").endswith('"te')  # read without repair: the file as it was
    assert [row["id"] for row in read_jsonl(path, repair=True)] == [0, 1, 2]
    assert path.read_text(encoding="utf-8") == "".join(lines)
    assert keep_jsonl_rows(path, lambda row: row["id"] != 1) == 1
    assert [row["id"] for row in read_jsonl(path)] == [0, 2]
    path.write_text(lines[0] + "not json\n" + lines[2], encoding="utf-8")
    with pytest.raises(RunFileError, match=r"rows\.jsonl: line 2 is not valid JSON \(not a cut-off last line\)"):
        read_jsonl(path)


def test_the_command_exits_1_while_videos_are_pending_and_0_once_done(server, tmp_path, capsys, monkeypatch):
    path = write_webvid(tmp_path / "caps.csv", ["a dog runs", "DOWN a cat sleeps"])
    command = ["make-qa", str(path), "--out", str(tmp_path / "qa"), "--endpoint", server.url, "--model", "fake"]
    monkeypatch.setenv("FAKE_SERVER_KEY", "sk-test")
    assert main([*command, "--retries", "0", "--api-key-env", "FAKE_SERVER_KEY"]) == 1
    assert {body["authorization (header)"] for body in server.requests} == {"Bearer sk-test"}
    assert not any("sk-test" in (tmp_path / "qa" / name).read_text() for name in ("settings.json", "summary.json"))
    out = capsys.readouterr().out
    assert "1 conversations (3 pairs) for 2 videos handled of 2" in out
    assert "1 videos pending (1 failed at every attempt): rerun to go on" in out
    server.down = False
    assert main(command) == 0  # --retries is how it runs, not what it writes: the folder goes on
    assert "2 conversations (6 pairs) for 2 videos handled of 2" in capsys.readouterr().out


def test_generated_text_with_line_separators_stays_one_record_for_the_training_reader(server, tmp_path):
    from stave.training.data import read_records
    from stave.training.recipe import DatasetSpec

    path = write_webvid(tmp_path / "caps.csv", ["UNICODE a cafe scene", "a dog runs"])
    make_qa(path, tmp_path / "qa", endpoint(server), progress=False)
    read = read_records(DatasetSpec(path=str(tmp_path / "qa" / "conversations.jsonl")))
    assert len(read) == 2 and read[0].messages[1]["content"][0]["text"] == "Caf\u00e9\u2028au lait."
