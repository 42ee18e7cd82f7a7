"""The offline lmms-eval tasks neckkit_yesno and neckkit_caption, scored by lmms-eval with fake models."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from lmms_eval.api.instance import Instance
from lmms_eval.api.model import lmms
from lmms_eval.evaluator import simple_evaluate
from lmms_eval.tasks import TaskManager, get_task_dict
from PIL import Image

from neckkit.lmms.tasks import LOCAL_TASKS, TASK_DIR
from neckkit.samples import SAMPLE_DIR

Reply = Callable[[str, dict[str, Any]], str]  # (task, doc) -> the model's answer
WRONG_CAPTION = "Two horses grazing in a green field."


class FakeLMM(lmms):
    """Answers every ``generate_until`` request with ``reply(task, doc)`` and keeps the requests it saw."""

    def __init__(self, reply: Reply) -> None:
        super().__init__()
        self.reply = reply
        self.requests: list[Instance] = []
        self.visuals: list[list[Image.Image]] = []

    def generate_until(self, requests: list[Instance]) -> list[str]:
        answers = []
        for request in requests:
            _context, _gen_kwargs, doc_to_visual, doc_id, task, split = request.args
            doc = self.task_dict[task][split][doc_id]
            self.requests.append(request)
            self.visuals.append(doc_to_visual(doc))
            answers.append(self.reply(task, doc))
        return answers

    def loglikelihood(self, requests: list[Instance]) -> list[tuple[float, bool]]:
        raise NotImplementedError

    def generate_until_multi_round(self, requests: list[Instance]) -> list[str]:
        raise NotImplementedError


def oracle(task: str, doc: dict[str, Any]) -> str:
    """The right answer, phrased as a chatty MLLM would; the first reference caption."""
    if task == "neckkit_yesno":
        return "Yes, there is." if doc["answer"] == "yes" else "No."
    return doc["captions"][0]


@pytest.fixture(scope="module")
def manager(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TaskManager]:
    """lmms-eval's tasks and ours, a private datasets cache, and a working folder that is not the repository."""
    patch = pytest.MonkeyPatch()
    patch.setenv("LMMS_EVAL_DATASETS_CACHE", str(tmp_path_factory.mktemp("datasets-cache")))
    patch.chdir(tmp_path_factory.mktemp("elsewhere"))
    yield TaskManager(include_path=str(TASK_DIR))
    patch.undo()


def evaluate(manager: TaskManager, reply: Reply, *tasks: str) -> tuple[dict[str, dict[str, Any]], FakeLMM]:
    """lmms-eval's scores of ``reply`` on ``tasks``, and the model (with the requests it saw)."""
    model = FakeLMM(reply)
    output = simple_evaluate(model=model, tasks=list(tasks), task_manager=manager, bootstrap_iters=0,
                             log_samples=False, random_seed=None, numpy_random_seed=None, torch_random_seed=None,
                             fewshot_random_seed=None)
    return output["results"], model


def test_task_manager_finds_both_tasks(manager: TaskManager) -> None:
    assert Path.cwd() != TASK_DIR.parents[2]
    for name in LOCAL_TASKS:
        assert manager.task_index[name]["type"] == "task"
        assert Path(manager.task_index[name]["yaml_path"]) == TASK_DIR / name / f"{name}.yaml"


def test_data_loads_from_another_folder(manager: TaskManager) -> None:
    tasks = get_task_dict(list(LOCAL_TASKS), manager)
    yesno, caption = tasks["neckkit_yesno"].test_docs(), tasks["neckkit_caption"].test_docs()
    assert len(yesno) == 32 and len(caption) == 4
    assert sorted(set(yesno["image"])) == sorted(caption["image"]) == sorted(p.name for p in SAMPLE_DIR.glob("*.jpg"))
    pairs: dict[str, list[str]] = {}
    for doc in yesno:
        pairs.setdefault(doc["pair_id"], []).append(doc["answer"])
    assert len(pairs) == 16 and all(sorted(answers) == ["no", "yes"] for answers in pairs.values())
    assert all(4 <= len(doc["captions"]) <= 5 for doc in caption)


def test_always_yes_scores_half_and_no_pairs(manager: TaskManager) -> None:
    results, _ = evaluate(manager, lambda task, doc: "Yes", "neckkit_yesno")
    assert results["neckkit_yesno"]["accuracy,none"] == 0.5
    assert results["neckkit_yesno"]["accuracy_plus,none"] == 0.0


def test_unparsable_answers_score_zero(manager: TaskManager) -> None:
    results, _ = evaluate(manager, lambda task, doc: "yesterday I saw it", "neckkit_yesno")
    assert results["neckkit_yesno"]["accuracy,none"] == 0.0


def test_oracle_scores_one_and_requests_look_as_documented(manager: TaskManager) -> None:
    results, model = evaluate(manager, oracle, *LOCAL_TASKS)
    assert results["neckkit_yesno"]["accuracy,none"] == 1.0
    assert results["neckkit_yesno"]["accuracy_plus,none"] == 1.0
    assert results["neckkit_caption"]["bleu4,none"] == pytest.approx(0.9999999999579469, rel=1e-9)
    assert results["neckkit_caption"]["cider,none"] == pytest.approx(3.8615348821763673, rel=1e-9)

    assert len(model.requests) == 36
    for request, visuals in zip(model.requests, model.visuals, strict=True):
        context, gen_kwargs, _, doc_id, task, split = request.args
        assert isinstance(doc_id, int) and split == "test" and task in LOCAL_TASKS
        assert gen_kwargs["until"] == ["\n"] and gen_kwargs["do_sample"] is False
        assert len(visuals) == 1 and visuals[0].mode == "RGB"
        doc = model.task_dict[task][split][doc_id]
        with Image.open(SAMPLE_DIR / doc["image"]) as photo:
            assert visuals[0].size == photo.size
        if task == "neckkit_yesno":
            assert context == f"{doc['question']}\nPlease answer yes or no." and gen_kwargs["max_new_tokens"] == 16
        else:
            assert context == "Provide a one-sentence caption for the provided image."
            assert gen_kwargs["max_new_tokens"] == 30


def test_a_wrong_caption_scores_lower(manager: TaskManager) -> None:
    results, _ = evaluate(manager, lambda task, doc: WRONG_CAPTION, "neckkit_caption")
    assert results["neckkit_caption"]["bleu4,none"] == pytest.approx(1.4453896006266362e-09, rel=1e-6)
    assert results["neckkit_caption"]["cider,none"] == pytest.approx(0.03986576071778121, rel=1e-9)
