"""The paper's zero-shot protocol on SSv2-T10 (issue #18, part A): class names in the prompt, and K in-context
examples from the training split (seeded, never the question's own video, logged, resumable); a tiny model end
to end with K=3."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
from benchmark_fixtures import SSV2_CLASSES, ssv2_records, write_ssv2
from test_evaluation import Lookup

from stave.evaluation import load_benchmark
from stave.evaluation.benchmarks import load_examples
from stave.evaluation.items import EvalItem, VideoRef
from stave.evaluation.prompts import messages, prompt_text
from stave.evaluation.run import EvalError, EvalSettings, evaluate, prepare
from stave.evaluation.shots import ExampleDraw, ExampleError
from stave.ssv2 import SUBSETS

T10 = SUBSETS["T10"]


def settings(benchmark: str = "ssv2-t10", **kw) -> EvalSettings:
    return EvalSettings(benchmark=benchmark, data="fixture", model="lookup", **kw)


@pytest.fixture
def ssv2_root(tmp_path) -> Path:
    """train.json with 5 records of each of the 15 fixture classes (50 of T10), validation.json with 2 each."""
    return write_ssv2(
        tmp_path / "ssv2",
        {"train": ssv2_records(SSV2_CLASSES, 5), "validation": ssv2_records(SSV2_CLASSES, 2, first_id=9000)},
    )


def rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


# --- class names in the prompt ------------------------------------------------------------------------------


def test_prompt_lists_the_class_names_and_answers_are_scored_by_the_class_they_name(ssv2_root, tmp_path):
    questions = load_benchmark("ssv2-t10", ssv2_root, format="open")
    assert len(questions) == 10 and all(q.classes == T10 and q.options is None for q in questions)
    first = questions[0]
    answers = {
        questions[0].qid: first.answer,  # the class, as written
        questions[1].qid: f"The action is: {questions[1].answer.lower()}.",  # named inside a sentence
        questions[2].qid: next(c for c in T10 if c != questions[2].answer),  # another class
        questions[3].qid: "something moves",  # no class named: unparseable
    }
    answers.update({q.qid: q.answer for q in questions[4:]})
    results = evaluate(Lookup(answers), questions, settings(prompt_classes=True), tmp_path / "run", progress=False)
    assert results["overall"] == {"accuracy": 8 / 10, "n": 10}
    assert results["counts"]["unparseable"] == 1 and results["unparseable_rate"] == pytest.approx(1 / 10)

    expected = (
        "What is the action happening in this video?\nThe possible answers are:\n"
        + "\n".join(T10)
        + "\nAnswer with one of them, exactly as written."
    )
    assert results["prompt"] == expected  # the exact prompt text, logged with the score
    assert f"```\n{expected}\n```" in (tmp_path / "run/results.md").read_text()
    logged = {row["qid"]: row for row in rows(tmp_path / "run/predictions.jsonl")}
    assert all(row["prompt"] == expected for row in logged.values())
    assert logged[questions[1].qid]["parsed"] == questions[1].answer and logged[questions[3].qid]["parsed"] is None

    # without the class names the question is the plain open one, scored by exact match: the sentence is wrong
    plain = evaluate(Lookup(answers), questions, settings(), tmp_path / "plain", progress=False)
    assert plain["overall"]["accuracy"] == 7 / 10
    assert plain["prompt"] == "What is the action happening in this video?\nAnswer in a few words."


def test_open_ssv2_lists_all_its_classes_and_other_benchmarks_are_refused(ssv2_root, tmp_path):
    questions = load_benchmark("ssv2", ssv2_root)
    assert all(q.classes == SSV2_CLASSES for q in questions)
    text = prompt_text(prepare(questions[:1], settings("ssv2", prompt_classes=True), None)[0])
    assert text.count("\n") == len(SSV2_CLASSES) + 2 and "\nTurning something upside down\n" in text

    multiple_choice = load_benchmark("ssv2-t10", ssv2_root)  # format=mc: the options already name the classes
    with pytest.raises(EvalError, match=r"ssv2-t10: prompt_classes .* is multiple choice"):
        evaluate(Lookup({}), multiple_choice, settings(prompt_classes=True), tmp_path / "mc", progress=False)
    unlabelled = [EvalItem("q", "t", "what?", (VideoRef(Path("v.mp4")),), None, "x")]
    with pytest.raises(EvalError, match="'q' has no class names"):
        evaluate(Lookup({}), unlabelled, settings("other", prompt_classes=True), tmp_path / "o", progress=False)
    assert not (tmp_path / "mc").exists() and not (tmp_path / "o").exists()


# --- in-context examples ------------------------------------------------------------------------------------


def item(qid: str, answer: str, video: str) -> EvalItem:
    return EvalItem(qid, answer, "what?", (VideoRef(Path(video)),), None, answer, classes=("a", "b", "c", "d"))


def test_examples_are_seeded_class_balanced_and_never_the_question_video():
    pool = [item(f"p{k}{i}", k, f"/v/{k}{i}.mp4") for k in "abcd" for i in range(4)]
    query = item("q", "a", "/v/query.mp4")

    six = ExampleDraw(pool, 6, seed=0).examples(query)
    counts = Counter(example.answer for example in six)
    assert sorted(counts.values()) == [1, 1, 2, 2] and len({e.qid for e in six}) == 6  # 6 over 4 classes
    draw = ExampleDraw(pool, 6, seed=0)
    assert [e.answer for e in six[:4]] == draw.order and [e.answer for e in six[4:]] == draw.order[:2]
    assert ExampleDraw(list(reversed(pool)), 6, seed=0).examples(query) == six  # the pool's order does not matter
    seeds = {tuple(e.qid for e in ExampleDraw(pool, 6, seed=s).examples(query)) for s in range(6)}
    assert len(seeds) == 6  # the seed draws

    three = ExampleDraw(pool, 3, seed=0).examples(query)
    assert len({example.answer for example in three}) == 3  # K < classes: K different classes, one each
    picked = Counter(e.answer for s in range(200) for e in ExampleDraw(pool, 1, seed=s).examples(query))
    assert set(picked) == set("abcd") and min(picked.values()) > 30  # which classes: uniform

    # a question on one of those videos gets the next member of the same class instead, the others unchanged
    clash = three[1]
    own = item("validation/x", "z", str(clash.videos[0].path))
    replaced = ExampleDraw(pool, 3, seed=0).examples(own)
    assert clash not in replaced and replaced[0] == three[0] and replaced[2] == three[2]
    assert replaced[1].answer == clash.answer

    with pytest.raises(ExampleError, match=r"'q': 17 in-context examples asked for, but .* only 16 items"):
        ExampleDraw(pool, 17, seed=0).examples(query)


def test_examples_come_from_the_training_split_and_are_logged_per_question(ssv2_root, tmp_path):
    questions = load_benchmark("ssv2-t10", ssv2_root, format="open")  # the seeded 20% test split
    pool = load_examples("ssv2-t10", ssv2_root, format="open")
    assert len(pool) == 40 and not {q.qid for q in pool} & {q.qid for q in questions}

    answers = {q.qid: q.answer for q in questions}
    lookup = Lookup(answers)
    asked = []
    lookup.generate = lambda batch: (asked.extend(batch), [answers[q.qid] for q in batch])[1]
    run = settings(prompt_classes=True, shots=3, shots_seed=7)
    evaluate(lookup, questions, run, tmp_path / "run", batch_size=3, progress=False, examples=pool)

    by_qid = {q.qid: q for q in pool}
    logged = {row["qid"]: row["examples"] for row in rows(tmp_path / "run/predictions.jsonl")}
    expected = [e.qid for e in ExampleDraw(pool, 3, 7).examples(questions[0])]
    assert set(logged) == set(answers) and all(ids == expected for ids in logged.values())
    for question in asked:  # what the model was asked: 3 solved turns, each with its own video, then the question
        conversation = messages(question)
        assert [m["role"] for m in conversation] == ["user", "assistant"] * 3 + ["user"]
        for k, qid in enumerate(expected):
            turn = conversation[2 * k]["content"]
            assert turn[0] == {"type": "video", "video": str(by_qid[qid].videos[0].path)}
            assert "The possible answers are:\n" in turn[1]["text"]
            assert conversation[2 * k + 1]["content"] == by_qid[qid].answer
        assert conversation[-1]["content"][0]["video"] == str(question.videos[0].path)

    # questions from every record (split=all) include the pool's own videos: those never see themselves
    everything = load_benchmark("ssv2-t10", ssv2_root, format="open", split="all")
    every = {q.qid: q for q in prepare(everything, run, pool)}
    assert all(qid not in [e.qid for e in q.examples] and len(q.examples) == 3 for qid, q in every.items())
    assert {tuple(e.qid for e in every[qid].examples) for qid in expected} != {tuple(expected)}


def test_changing_the_number_of_examples_or_their_seed_is_another_run_and_resume_asks_nothing_twice(
    ssv2_root, tmp_path
):
    questions = load_benchmark("ssv2-t10", ssv2_root, format="open")
    pool = load_examples("ssv2-t10", ssv2_root, format="open")
    answers = {q.qid: q.answer for q in questions}

    class Killed(Lookup):
        def generate(self, batch):
            if len(self.asked) >= 4:
                raise KeyboardInterrupt
            return super().generate(batch)

    run = settings(prompt_classes=True, shots=3)
    with pytest.raises(KeyboardInterrupt):
        evaluate(Killed(answers), questions, run, tmp_path / "run", batch_size=2, progress=False, examples=pool)
    again = Lookup(answers)
    evaluate(again, questions, run, tmp_path / "run", batch_size=2, progress=False, examples=pool)
    assert len(again.asked) == 6
    whole = tmp_path / "whole"
    evaluate(Lookup(answers), questions, run, whole, batch_size=4, progress=False, examples=pool)
    resumed = {row["qid"]: row for row in rows(tmp_path / "run/predictions.jsonl")}
    assert resumed == {row["qid"]: row for row in rows(whole / "predictions.jsonl")}  # same examples, same rows

    for changed, message in [({"shots": 5}, "shots: 3 there, 5 now"), ({"shots_seed": 1}, "shots_seed: 0 there")]:
        other = settings(prompt_classes=True, **{"shots": 3, **changed})
        with pytest.raises(EvalError, match=message):
            evaluate(Lookup(answers), questions, other, tmp_path / "run", progress=False, examples=pool)
    with pytest.raises(EvalError, match="prompt_classes: True there, False now"):
        evaluate(Lookup(answers), questions, settings(shots=3), tmp_path / "run", progress=False, examples=pool)
    with pytest.raises(EvalError, match="shots=3 needs labelled examples"):
        evaluate(Lookup(answers), questions, run, tmp_path / "none", progress=False)


def test_a_run_started_before_these_settings_existed_still_resumes(ssv2_root, tmp_path):
    questions = load_benchmark("ssv2-t10", ssv2_root)
    answers = {q.qid: q.answer_letter for q in questions}
    evaluate(Lookup(answers), questions[:5], settings(), tmp_path, progress=False)
    stored = json.loads((tmp_path / "settings.json").read_text())
    for key in ("benchmark_options", "prompt_classes", "shots", "shots_seed"):
        del stored[key]
    (tmp_path / "settings.json").write_text(json.dumps(stored))
    again = Lookup(answers)
    assert evaluate(again, questions, settings(), tmp_path, progress=False)["overall"]["n"] == 10
    assert len(again.asked) == 5


def test_training_records_skipped_on_load_are_counted_with_the_results(ssv2_root, tmp_path):
    from stave.evaluation import LoadReport

    gone = load_examples("ssv2-t10", ssv2_root, format="open")[0]
    gone.videos[0].path.unlink()
    report = LoadReport()
    pool = load_examples("ssv2-t10", ssv2_root, format="open", report=report)
    questions = load_benchmark("ssv2-t10", ssv2_root, format="open")
    run = settings(prompt_classes=True, shots=2)
    results = evaluate(Lookup({q.qid: "x" for q in questions}), questions, run, tmp_path / "run", progress=False,
                       examples=pool, examples_report=report)  # fmt: skip
    assert results["example_pool"]["items"] == 39 and results["example_pool"]["skipped_on_load"] == 1
    assert gone.qid in results["example_pool"]["skipped"][0]["record"]


def test_benchmarks_without_a_training_split_are_refused():
    for name in ("mvbench", "videomme", "videomme-subs", "vitatecs", "tempcompass"):
        with pytest.raises(ValueError, match=f"{name} has no labelled training split"):
            load_examples(name, "/nonexistent")


DISTRIBUTED = """
import sys
sys.path.insert(0, {tests!r})
from test_evaluation import Lookup
from test_shots import settings
from stave.evaluation import load_benchmark
from stave.evaluation.benchmarks import load_examples
from stave.evaluation.run import evaluate
questions = load_benchmark("ssv2-t10", {root!r}, format="open")
pool = load_examples("ssv2-t10", {root!r}, format="open")
answers = {{q.qid: q.answer for q in questions}}
evaluate(Lookup(answers), questions, settings(prompt_classes=True, shots=3, shots_seed=2), {out!r}, batch_size=2,
         progress=False, examples=pool)
"""


def test_data_parallel_runs_give_every_question_the_examples_of_one_process(ssv2_root, tmp_path):
    from launchers import launch

    questions = load_benchmark("ssv2-t10", ssv2_root, format="open")
    pool = load_examples("ssv2-t10", ssv2_root, format="open")
    run = settings(prompt_classes=True, shots=3, shots_seed=2)
    evaluate(Lookup({q.qid: q.answer for q in questions}), questions, run, tmp_path / "one", progress=False,
             examples=pool)  # fmt: skip
    script = tmp_path / "run.py"
    script.write_text(
        DISTRIBUTED.format(tests=str(Path(__file__).parent), root=str(ssv2_root), out=str(tmp_path / "two"))
    )
    result = launch("torchrun", str(script))
    assert result.returncode == 0, result.stderr[-3000:]
    shares = [rows(tmp_path / f"two/predictions.rank{rank}.jsonl") for rank in (0, 1)]
    assert sorted(len(share) for share in shares) == [5, 5]
    one = {row["qid"]: row for row in rows(tmp_path / "one/predictions.jsonl")}
    assert all(len(row["examples"]) == 3 for row in one.values())
    assert {row["qid"]: row for share in shares for row in share} == one


# --- a tiny model end to end --------------------------------------------------------------------------------


@pytest.fixture
def tiny_ssv2(tmp_path, preset) -> tuple[Path, Path]:
    """A saved tiny random model of `preset` (a word tokenizer knowing the prompt's words) and an SSv2 root with
    decodable videos (<id>.mp4: read with extension=".mp4"): 2 records of each T10 class in train.json (the test
    split: 4 of them)."""
    from benchmark_fixtures import real_video

    from stave.presets import tiny_model, tiny_tokenizer
    from stave.tokenizer import split_words

    records = {"train": ssv2_records(SSV2_CLASSES, 2)}
    root = write_ssv2(tmp_path / "ssv2", records, video_writer=lambda path: real_video(path.with_suffix(".mp4")))
    words = split_words(" ".join([*T10, "what is the action happening in this video ? possible answers are :",
                                  "answer with one of them , exactly as written ."]))  # fmt: skip
    tokenizer = tiny_tokenizer(preset, words)  # with the family's placeholders and prompt words
    model = tiny_model(preset, tokenizer=tokenizer)
    model.save_pretrained(tmp_path / "model")
    tokenizer.save_pretrained(tmp_path / "model")
    return tmp_path / "model", root


def test_tiny_model_with_three_examples_end_to_end(tiny_ssv2, tmp_path, capsys):
    """`stave eval` with the class names and 3 examples on SSv2-T10 (open): each question is answered after the
    same 3 solved training videos, logged; a rerun resumes; another K is refused; through the library the video
    cache decodes each example once for the whole run."""
    from stave.cli import main
    from stave.evaluation import load_answerer
    from stave.video import VideoOptions

    model, root = tiny_ssv2
    flags = ["eval", "--model", str(model), "--benchmark", "ssv2-t10", "--data", str(root), "--benchmark-option",
             "format=open", "--benchmark-option", "extension=.mp4", "--prompt-classes", "--shots", "3",
             "--frames", "4", "--min-pixels", "3136", "--max-pixels", "3136", "--output", str(tmp_path / "run"),
             "--batch-size", "3", "--max-new-tokens", "4"]  # fmt: skip
    assert main(flags) == 0
    assert "class names in the prompt: yes; in-context examples: 3 (seed 0" in capsys.readouterr().out
    questions = load_benchmark("ssv2-t10", root, format="open", extension=".mp4")
    pool = load_examples("ssv2-t10", root, format="open", extension=".mp4")
    expected = [e.qid for e in ExampleDraw(pool, 3, 0).examples(questions[0])]
    logged = rows(tmp_path / "run/predictions.jsonl")
    assert len(logged) == len(questions) == 4 and all(row["examples"] == expected for row in logged)
    results = json.loads((tmp_path / "run/results.json").read_text())
    assert results["settings"]["shots"] == 3 and results["settings"]["benchmark_options"] == {
        "format": "open",
        "extension": ".mp4",
    }
    assert results["prompt"].endswith("Answer with one of them, exactly as written.")

    before = (tmp_path / "run/predictions.jsonl").read_text()
    assert main(flags) == 0 and (tmp_path / "run/predictions.jsonl").read_text() == before  # resumed: nothing asked
    assert main([*flags, "--shots", "1"]) == 2
    assert "other settings (shots: 3 there, 1 now)" in capsys.readouterr().err

    options = VideoOptions(nframes=4, min_pixels=3136, max_pixels=3136)
    answerer = load_answerer(model, video_options=options, max_new_tokens=4)
    run = EvalSettings("ssv2-t10", str(root), "tiny", video=options, prompt_classes=True, shots=3)
    evaluate(answerer, questions, run, tmp_path / "again", batch_size=3, progress=False, examples=pool)
    assert answerer.cache.misses == 4 + 3 and answerer.cache.hits == 4 * 4 - 7  # 4 questions, 3 examples
    assert [r["raw"] for r in rows(tmp_path / "again/predictions.jsonl")] == [r["raw"] for r in logged]


def test_option_likelihoods_after_examples_score_the_question_answer_only(tiny_ssv2):
    """With examples before it, an option's log-likelihood is that of the last answer alone: the examples'
    answers are context, not scored."""
    import torch

    from stave.evaluation import load_answerer
    from stave.video import VideoOptions

    model, root = tiny_ssv2
    answerer = load_answerer(model, video_options=VideoOptions(nframes=4, min_pixels=3136, max_pixels=3136))
    questions, pool = (
        load_benchmark("ssv2-t10", root, extension=".mp4"),
        load_examples("ssv2-t10", root, extension=".mp4"),
    )
    question = prepare(questions[:1], settings(shots=2), pool)[0]
    assert question.options == T10 and len(question.examples) == 2
    scores = answerer.option_scores([question])[0]
    option = question.options[4]
    conversation = messages(question) + [{"role": "assistant", "content": option}]
    encoded = answerer.processor.encode(conversation, train=True)
    answer = answerer.tokenizer(option + "<|im_end|>", add_special_tokens=False)["input_ids"]
    ids = encoded["input_ids"].tolist()
    end = len(ids) - ids[::-1].index(answer[-1])  # the last answer ends with the last <|im_end|>
    assert ids[end - len(answer) : end] == answer
    batch = answerer.processor.collate([encoded])
    batch.pop("labels")
    with torch.no_grad():
        logprobs = torch.log_softmax(answerer.model(**batch).logits[0].float(), -1)
    direct = [logprobs[p - 1, encoded["input_ids"][p]].item() for p in range(end - len(answer), end)]
    assert scores[4] == pytest.approx(sum(direct) / len(direct), abs=1e-4)


def test_stave_eval_refuses_settings_that_do_not_apply_before_loading_a_model(tmp_path, capsys):
    from benchmark_fixtures import write_mvbench

    from stave.cli import main

    record = {"video": "a.mp4", "question": "which way ?", "candidates": ["left", "right"], "answer": "left"}
    root = write_mvbench(tmp_path / "mvbench", {"action_antonym": [record]})
    flags = ["eval", "--model", str(tmp_path / "no-model"), "--benchmark", "mvbench", "--data", str(root)]
    assert main([*flags, "--shots", "3"]) == 2
    assert "mvbench has no labelled training split to draw in-context examples from" in capsys.readouterr().err
    assert main([*flags, "--prompt-classes"]) == 2
    assert "question 'action_antonym/0' is multiple choice" in capsys.readouterr().err
    assert main([*flags, "--benchmark-option", "colour=red"]) == 2
    assert "unexpected keyword argument 'colour'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main([*flags, "--benchmark-option", "format"])
    assert "expected KEY=VALUE, got 'format'" in capsys.readouterr().err
