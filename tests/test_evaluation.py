"""The evaluation runner: scoring with known answers, resume after a kill, results and comparison, and a
tiny model end to end (generation and log-likelihood)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import generated_text

from stave.evaluation.compare import comparison_chart, comparison_table
from stave.evaluation.items import LETTERS, EvalItem, LoadReport, VideoRef
from stave.evaluation.prompts import messages
from stave.evaluation.run import EvalError, EvalSettings, evaluate
from stave.video import VideoOptions

OPTIONS = ("moving left", "moving right", "falling down")


def items(n: int = 12) -> list[EvalItem]:
    out = []
    for i in range(n):
        task = ["direction", "speed", "order"][i % 3]
        out.append(
            EvalItem(
                qid=f"q{i}",
                task=task,
                question=f"what happens in video {i}?",
                videos=(VideoRef(Path(f"v{i // 2}.mp4")),),
                options=OPTIONS,
                answer=OPTIONS[i % 3],
                groups={"duration": "short" if i < 6 else "long"},
            )
        )
    return out


class Lookup:
    """A fake model answering from a table qid -> raw answer; counts what it was asked."""

    def __init__(self, answers: dict[str, str]) -> None:
        self.answers = answers
        self.asked: list[str] = []

    def generate(self, batch):
        self.asked += [item.qid for item in batch]
        return [self.answers[item.qid] for item in batch]

    def option_scores(self, batch):
        self.asked += [item.qid for item in batch]
        return [[1.0 if LETTERS[k] == self.answers[item.qid] else 0.0 for k in range(3)] for item in batch]


def settings(**kw) -> EvalSettings:
    return EvalSettings(benchmark="fixture", data="fixture", model="lookup", **kw)


def test_all_right_all_wrong_and_a_known_mix(tmp_path):
    questions = items()
    right = Lookup({q.qid: f"({q.answer_letter})" for q in questions})
    assert evaluate(right, questions, settings(), tmp_path / "right", progress=False)["overall"]["accuracy"] == 1.0
    wrong = Lookup({q.qid: LETTERS[(q.answer_index + 1) % 3] for q in questions})
    assert evaluate(wrong, questions, settings(), tmp_path / "wrong", progress=False)["overall"]["accuracy"] == 0.0

    # mix: direction items right (4), speed items by option text right (4), order items unparseable (4)
    mix = {}
    for q in questions:
        mix[q.qid] = {"direction": q.answer_letter, "speed": f"It is {q.answer}.", "order": "no idea"}[q.task]
    results = evaluate(Lookup(mix), questions, settings(), tmp_path / "mix", progress=False)
    assert results["overall"] == {"accuracy": 8 / 12, "n": 12}
    assert results["tasks"]["direction"]["accuracy"] == 1.0 and results["tasks"]["order"]["accuracy"] == 0.0
    assert results["counts"]["unparseable"] == 4 and results["unparseable_rate"] == pytest.approx(4 / 12)
    assert results["groups"]["duration"]["short"]["n"] == 6
    rows = [json.loads(x) for x in (tmp_path / "mix/predictions.jsonl").read_text().splitlines()]
    assert {"qid", "task", "prompt", "raw", "parsed", "answer", "correct"} <= set(rows[0])
    assert "(A) moving left" in rows[0]["prompt"]
    table = (tmp_path / "mix/results.md").read_text()
    assert "66.67" in table and "| order | 0.00 | 4 |" in table and "template qwen-mc-v1" in table


def test_loglik_scoring_picks_the_best_option(tmp_path):
    questions = items(6)
    answers = {q.qid: q.answer_letter if i % 2 else "A" for i, q in enumerate(questions)}
    results = evaluate(Lookup(answers), questions, settings(scoring="loglik"), tmp_path, progress=False)
    expected = sum(answers[q.qid] == q.answer_letter for q in questions) / 6
    assert results["overall"]["accuracy"] == pytest.approx(expected)
    assert results["counts"]["unparseable"] == 0


def test_open_ended_items_score_by_normalised_exact_match(tmp_path):
    questions = [
        EvalItem(f"o{i}", "cls", "what?", (VideoRef(Path("v.mp4")),), None, "Pulling something from left to right")
        for i in range(3)
    ]
    answers = {
        "o0": "pulling something from left to right.",
        "o1": "The pulling something from left to right",
        "o2": "x",
    }
    results = evaluate(Lookup(answers), questions, settings(), tmp_path, progress=False)
    assert results["overall"]["accuracy"] == pytest.approx(2 / 3)


def test_kill_and_resume_gives_identical_scores(tmp_path):
    questions = items()
    answers = {q.qid: LETTERS[(q.answer_index + (q.qid in ("q3", "q7"))) % 3] for q in questions}
    whole = evaluate(Lookup(answers), questions, settings(), tmp_path / "whole", batch_size=3, progress=False)

    class Killed(Lookup):
        def generate(self, batch):
            if len(self.asked) >= 6:
                raise KeyboardInterrupt  # killed mid-run, after two batches were written
            return super().generate(batch)

    with pytest.raises(KeyboardInterrupt):
        evaluate(Killed(answers), questions, settings(), tmp_path / "cut", batch_size=3, progress=False)
    path = tmp_path / "cut/predictions.jsonl"
    path.write_text(path.read_text() + '{"qid": "q1', encoding="utf-8")  # and a line cut short
    again = Lookup(answers)
    resumed = evaluate(again, questions, settings(), tmp_path / "cut", batch_size=3, progress=False)
    assert len(again.asked) == 6  # only the unanswered half
    for key in ("overall", "tasks", "groups", "counts"):
        assert resumed[key] == whole[key]
    assert len(path.read_text().splitlines()) == 12

    with pytest.raises(EvalError, match=r"other settings \(template:.*'qwen-mc-v1' there"):
        evaluate(again, questions, settings(template="other"), tmp_path / "cut", progress=False)

    # a run begun before VideoOptions had `budget` and `frame_factor` resumes as a run with their defaults
    stored = tmp_path / "cut/settings.json"
    old = json.loads(stored.read_text())
    del old["video"]["budget"], old["video"]["frame_factor"]
    stored.write_text(json.dumps(old))
    assert evaluate(Lookup(answers), questions, settings(), tmp_path / "cut", progress=False)["overall"]
    other = settings(video=VideoOptions(budget="video"))
    with pytest.raises(EvalError, match=r"other settings \(video:.*'budget': 'frame'.*there"):
        evaluate(Lookup(answers), questions, other, tmp_path / "cut", progress=False)


def test_duplicate_question_ids_are_refused(tmp_path):
    with pytest.raises(EvalError, match="'q0' appears twice"):
        evaluate(Lookup({}), items(2) + items(1), settings(), tmp_path, progress=False)


def test_load_report_skips_are_counted_in_the_results(tmp_path):
    report = LoadReport()
    report.skip("file.json:3", "video missing: v9.mp4")
    questions = items(3)
    results = evaluate(Lookup({q.qid: "A" for q in questions}), questions, settings(), tmp_path, load_report=report)
    assert results["counts"]["skipped_on_load"] == 1 and results["skipped"][0]["record"] == "file.json:3"


def test_compare_prints_deltas_and_saves_a_chart(tmp_path):
    questions = items()
    evaluate(Lookup({q.qid: "A" for q in questions}), questions, settings(), tmp_path / "baseline", progress=False)
    evaluate(
        Lookup({q.qid: q.answer_letter for q in questions}), questions, settings(), tmp_path / "sta", progress=False
    )
    table = comparison_table([tmp_path / "baseline", tmp_path / "sta"])
    assert "| overall | 33.33 (n=12) | 100.00 (n=12) | +66.67 |" in table
    assert "| direction | 100.00 (n=4) | 100.00 (n=4) | +0.00 |" in table
    chart = comparison_chart([tmp_path / "baseline", tmp_path / "sta"], tmp_path / "chart.png")
    assert chart.stat().st_size > 1000
    with pytest.raises(EvalError, match="no results.json"):
        comparison_table([tmp_path / "baseline", tmp_path / "nothing"])


# --- a tiny model end to end ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory) -> tuple[Path, list[EvalItem]]:
    """A saved tiny random Qwen2-VL with STA and a word tokenizer, and questions about generated videos."""
    from training_data import QUESTION, write_dataset

    import stave
    from stave.presets import tiny_model
    from stave.tokenizer import build_word_tokenizer

    root = tmp_path_factory.mktemp("tiny")
    write_dataset(root / "data", 4)
    options = ("left", "right", "up down")
    words = "answer with the option ' s letter from given choices directly left right up down b c ( )"
    tokenizer = build_word_tokenizer([*QUESTION.split(), *words.split()])
    model = stave.add_temporal_attention(tiny_model(tokenizer=tokenizer), stave.TemporalConfig(init="random"))
    model.save_pretrained(root / "model")
    tokenizer.save_pretrained(root / "model")
    questions = [
        EvalItem(
            f"t{i}", "direction", QUESTION, (VideoRef(root / f"data/videos/{i:03d}.mp4"),), options, options[i % 2]
        )  # fmt: skip
        for i in range(4)
    ]
    return root / "model", questions


def test_batched_generation_gives_each_row_its_own_answer(tmp_path):
    """The shipped base answers position questions about still clips and images, differently per clip; asked
    together with colour questions (longer prompts), images and videos in one batch, so that rows are
    left-padded by different amounts, every row gets the answer it gets alone, and (transformers 5) the
    position answers are the true positions of its own clip or image."""
    from stave.base import TINY_BASE, VIDEO_OPTIONS
    from stave.evaluation.benchmarks.synthetic import load_synthetic
    from stave.evaluation.model import load_answerer
    from stave.processing import TRANSFORMERS_MAJOR
    from stave.synthetic import generate

    generate(tmp_path / "still", n=8, seed=3, tasks="still", images=True)
    questions = [q for q in load_synthetic(tmp_path / "still", split="train") if q.task != "shape"]
    answerer = load_answerer(TINY_BASE, video_options=VIDEO_OPTIONS, template="synth-v1", max_new_tokens=2)
    lengths = [len(answerer.processor.encode(messages(q, "synth-v1"), train=False)["input_ids"]) for q in questions]
    assert sorted(set(lengths)) == [42, 44, 69, 71]  # image/video x position/colour: rows padded by 0 to 29
    batched = answerer.generate(questions)
    assert batched == [answerer.generate([q])[0] for q in questions]
    positions = [answer for q, answer in zip(questions, batched, strict=True) if q.task != "colour"]
    assert set(positions) == {"left", "centre", "right", "top", "middle", "bottom"}  # answers differ per clip
    if TRANSFORMERS_MAJOR >= 5:  # the base was trained on 5.x; on 4.57 it misplaces 5 of these 24
        assert positions == [q.answer for q in questions if q.task != "colour"]


def test_tiny_model_option_scores_match_a_direct_computation(tiny_folder):
    import torch

    from stave.evaluation.model import load_answerer
    from stave.evaluation.prompts import messages

    path, questions = tiny_folder
    answerer = load_answerer(path, video_options=VideoOptions(nframes=4, min_pixels=3136, max_pixels=3136))
    scores = answerer.option_scores(questions[:2])
    assert [len(s) for s in scores] == [3, 3]
    item, option = questions[1], questions[1].options[2]
    encoded = answerer.processor.encode(messages(item) + [{"role": "assistant", "content": option}], train=True)
    batch = answerer.processor.collate([encoded])
    labels = batch.pop("labels")[0]
    with torch.no_grad():
        logprobs = torch.log_softmax(answerer.model(**batch).logits[0].float(), -1)
    positions = (labels != -100).nonzero().flatten()
    direct = torch.stack([logprobs[p - 1, labels[p]] for p in positions]).mean().item()
    assert scores[1][2] == pytest.approx(direct, abs=1e-4)


def test_label_log_likelihoods_sum_the_labelled_tokens_and_tell_a_greedy_continuation(tiny_folder):
    import torch

    from stave.evaluation.model import load_answerer
    from stave.evaluation.prompts import messages
    from stave.video import VideoOptions

    path, questions = tiny_folder
    answerer = load_answerer(path, video_options=VideoOptions(nframes=4, min_pixels=3136, max_pixels=3136))
    prompt = answerer.processor.encode(messages(questions[0]), train=False)
    start = len(prompt["input_ids"])
    with torch.no_grad():
        out = answerer.model.generate(**answerer.processor.collate([prompt]), max_new_tokens=3, min_new_tokens=3)
    greedy = out[0, start:]
    other = greedy.clone()
    other[-1] = (other[-1] + 1) % len(answerer.tokenizer)

    def labelled(tokens: torch.Tensor) -> dict:
        return {
            **prompt,
            "input_ids": torch.cat([prompt["input_ids"], tokens]),
            "mm_token_type_ids": torch.cat([prompt["mm_token_type_ids"], tokens * 0]),
            "labels": torch.cat([torch.full_like(prompt["input_ids"], -100), tokens]),
        }

    short = {**prompt, "labels": torch.full_like(prompt["input_ids"], -100)}  # nothing labelled, a shorter row
    scores = answerer.label_log_likelihoods([labelled(greedy), labelled(other), short])
    batch = answerer.processor.collate([labelled(greedy)])
    batch.pop("labels")
    with torch.no_grad():
        logprobs = torch.log_softmax(answerer.model(**batch).logits[0].float(), -1)
    direct = sum(logprobs[start + k - 1, token].item() for k, token in enumerate(greedy.tolist()))
    assert scores[0][0] == pytest.approx(direct, abs=1e-4) and scores[0][1:] == (3, True)
    assert scores[1][1:] == (3, False)
    assert scores[2] == (0.0, 0, True)


def test_tiny_model_evaluation_and_ask(tiny_folder, tmp_path):
    from stave.evaluation import ask
    from stave.evaluation.model import load_answerer
    from stave.video import VideoOptions

    path, questions = tiny_folder
    options = VideoOptions(nframes=4, min_pixels=3136, max_pixels=3136)
    answerer = load_answerer(path, video_options=options)
    for scoring in ("generate", "loglik"):
        results = evaluate(answerer, questions, settings(scoring=scoring, video=options), tmp_path / scoring)
        assert results["overall"]["n"] == 4 and results["settings"]["video"]["nframes"] == 4
    video, question = questions[0].videos[0].path, "which way does the square move ?"
    asked = [{"role": "user", "content": [{"type": "video", "video": str(video)}, {"type": "text", "text": question}]}]
    expected = generated_text(answerer.model, answerer.tokenizer, asked, options, max_new_tokens=3)
    assert ask(answerer, video, question, max_new_tokens=3) == expected


DISTRIBUTED = """
import sys
sys.path.insert(0, {tests!r})
from test_evaluation import Lookup, items, settings
from stave.evaluation.run import evaluate
questions = items()
answers = {{q.qid: ("A" if q.task == "order" else q.answer_letter) for q in questions}}
evaluate(Lookup(answers), questions, settings(), {out!r}, batch_size=2, progress=False)
"""


def test_data_parallel_evaluation_over_two_processes_gives_the_same_scores(tmp_path):
    import os
    import socket
    import subprocess
    import sys

    questions = items()
    answers = {q.qid: ("A" if q.task == "order" else q.answer_letter) for q in questions}
    single = evaluate(Lookup(answers), questions, settings(), tmp_path / "one", progress=False)

    script = tmp_path / "run.py"
    script.write_text(DISTRIBUTED.format(tests=str(Path(__file__).parent), out=str(tmp_path / "two")))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-addr", "127.0.0.1",
               "--master-port", str(port), str(script)]  # fmt: skip
    result = subprocess.run(
        command, capture_output=True, text=True, timeout=240, env={**os.environ, "OMP_NUM_THREADS": "1"}
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert sorted(p.name for p in (tmp_path / "two").glob("predictions*")) == [
        "predictions.rank0.jsonl",
        "predictions.rank1.jsonl",
    ]
    two = json.loads((tmp_path / "two/results.json").read_text())
    for key in ("overall", "tasks", "groups", "counts"):
        assert two[key] == single[key]


@pytest.fixture(scope="module")
def mvbench_fixture(tmp_path_factory) -> Path:
    """An MVBench layout with 7 questions on 3 moving-square videos, in 2 tasks."""
    from benchmark_fixtures import write_mvbench
    from training_data import moving_square

    from stave.video.encode import write_video

    def clip(path: Path) -> None:
        write_video(path, moving_square("left" if "a" in path.stem else "right", frames=8), fps=4)

    def record(video: str, k: int) -> dict:
        answer = ["left", "right"][k % 2]
        return {"video": video, "question": f"which way {k} ?", "candidates": ["left", "right"], "answer": answer}

    tasks = {
        "action_antonym": [record(f"a{i % 2}.mp4", i) for i in range(4)],
        "fine_grained_action": [record("b.mp4", i) for i in range(3)],
    }
    return write_mvbench(tmp_path_factory.mktemp("mvbench"), tasks, video_writer=clip)


def eval_flags(model: Path, data: Path, output: Path) -> list[str]:
    return ["eval", "--model", str(model), "--benchmark", "mvbench", "--data", str(data), "--frames", "4",
            "--min-pixels", "3136", "--max-pixels", "3136", "--output", str(output), "--batch-size", "2",
            "--scoring", "loglik"]  # fmt: skip


@pytest.mark.parametrize("launcher", ["torchrun", "accelerate"])
def test_stave_eval_under_a_launcher_answers_each_question_once(tiny_folder, mvbench_fixture, tmp_path, launcher):
    """`stave eval` in 2 processes with no settings: each process answers its share of the questions into its
    own predictions file, each question once, and the scores and answers equal a 1-process run's."""
    from launchers import launch

    from stave.cli import main

    assert main(eval_flags(tiny_folder[0], mvbench_fixture, tmp_path / "one")) == 0
    result = launch(launcher, "-m", "stave.cli", *eval_flags(tiny_folder[0], mvbench_fixture, tmp_path / "two"))
    assert result.returncode == 0, result.stderr[-4000:]
    assert "terminate called" not in result.stderr
    two = tmp_path / "two"
    files = sorted(p.name for p in two.glob("predictions*"))
    assert files == ["predictions.rank0.jsonl", "predictions.rank1.jsonl"]
    shares = [[json.loads(line) for line in (two / name).read_text().splitlines()] for name in files]
    assert sorted(len(rows) for rows in shares) == [3, 4]
    rows = [row for share in shares for row in share]
    one = [json.loads(line) for line in (tmp_path / "one/predictions.jsonl").read_text().splitlines()]
    assert len(rows) == len({row["qid"] for row in rows}) == 7

    def by_qid(rows: list[dict]) -> dict:  # option scores to 1e-5: the batches differ (padding)
        return {row["qid"]: (row["parsed"], [round(x, 5) for x in row["option_scores"]]) for row in rows}

    assert by_qid(rows) == by_qid(one)
    results = [json.loads((tmp_path / run / "results.json").read_text()) for run in ("one", "two")]
    for key in ("overall", "tasks", "groups", "counts"):
        assert results[0][key] == results[1][key]


def test_stave_eval_whose_processes_do_not_form_one_run_stops_naming_the_fix(
    tiny_folder, mvbench_fixture, tmp_path
):
    """On a machine whose accelerator accelerate cannot run several processes on (pretended here), each
    launched process would evaluate every question alone: stave stops every rank with the error naming
    what it found and the fix, which works."""
    from launchers import UNJOINED, launch

    script = tmp_path / "unjoined.py"
    script.write_text(UNJOINED)
    flags = eval_flags(tiny_folder[0], mvbench_fixture, tmp_path / "run")
    result = launch("torchrun", str(script), *flags)
    assert result.returncode != 0
    message = (
        "stave eval: error: the launcher started 2 processes (WORLD_SIZE=2; this is RANK={rank}, LOCAL_RANK={rank}) "
        "on a machine with accelerator mps, but accelerate set them up as DistributedType.NO with 1 process(es) "
        "on cpu: each would run alone on the same data and write the same folder. accelerate launch --cpu (or "
        "ACCELERATE_USE_CPU=true) runs the evaluation on the CPUs."
    )
    assert all(message.format(rank=rank) in result.stderr for rank in (0, 1)), result.stderr[-4000:]
    assert not (tmp_path / "run").exists()

    fixed = launch("torchrun", str(script), *flags, ACCELERATE_USE_CPU="true")
    assert fixed.returncode == 0, fixed.stderr[-4000:]
    assert sorted(p.name for p in (tmp_path / "run").glob("predictions*")) == [
        "predictions.rank0.jsonl",
        "predictions.rank1.jsonl",
    ]


def test_stave_eval_command_on_an_mvbench_fixture_decodes_each_video_once(tiny_folder, tmp_path, capsys):
    from benchmark_fixtures import write_mvbench
    from training_data import moving_square

    from stave.cli import main
    from stave.evaluation import EvalSettings, load_answerer, load_benchmark
    from stave.video import VideoOptions
    from stave.video.encode import write_video

    def clip(path: Path) -> None:
        write_video(path, moving_square("left", frames=8), fps=4)

    def record(video: str, k: int) -> dict:
        return {"video": video, "question": f"which way {k} ?", "candidates": ["left", "right"], "answer": "left"}

    tasks = {
        "action_antonym": [record(f"a{i % 2}.mp4", i) for i in range(4)],  # two questions per video
        "fine_grained_action": [record("b.mp4", i) for i in range(2)],
    }
    root = write_mvbench(tmp_path / "mvbench", tasks, video_writer=clip)
    flags = ["eval", "--model", str(tiny_folder[0]), "--benchmark", "mvbench", "--data", str(root), "--frames", "4",
             "--min-pixels", "3136", "--max-pixels", "3136", "--output", str(tmp_path / "run"),
             "--batch-size", "2"]  # fmt: skip
    assert main(flags) == 0
    assert "# mvbench:" in capsys.readouterr().out
    results = json.loads((tmp_path / "run/results.json").read_text())
    assert results["overall"]["n"] == 6 and set(results["tasks"]) == {"action_antonym", "fine_grained_action"}
    assert results["settings"]["video"]["nframes"] == 4 and results["settings"]["model"] == str(tiny_folder[0])
    lines = (tmp_path / "run/predictions.jsonl").read_text()
    assert main(flags) == 0  # a rerun resumes: nothing is asked again
    assert (tmp_path / "run/predictions.jsonl").read_text() == lines

    options = VideoOptions(nframes=4, min_pixels=3136, max_pixels=3136)
    answerer = load_answerer(tiny_folder[0], video_options=options)
    items = load_benchmark("mvbench", root)
    evaluate(
        answerer, items, EvalSettings("mvbench", str(root), "tiny", video=options), tmp_path / "again", batch_size=2
    )
    assert answerer.cache.misses == 3 and answerer.cache.hits == 3  # 3 videos, 6 questions
