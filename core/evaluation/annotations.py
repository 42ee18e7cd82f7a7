"""Reference captions and questions for ``neckkit eval``, keyed by image.

An image's key is its path relative to the data folder, with ``/`` separators (``coffee.jpg``,
``n01440764/a.jpg``); a file may also name images by file name alone when those are unique.

Captions, either format:

- ``{"coffee.jpg": ["a cup of coffee on a saucer", ...], ...}`` (a single string is one reference);
- COCO's ``{"images": [{"id": 1, "file_name": "coffee.jpg"}], "annotations": [{"image_id": 1, "caption": "..."}]}``.

Questions (VQA): ``[{"image": "coffee.jpg", "question": "What is in the cup?", "answers": ["coffee", ...]}]``,
or the same list under ``{"questions": [...]}``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from neckkit.errors import NeckkitError


@dataclass(frozen=True)
class Question:
    """One visual question and the human answers it is scored against."""

    image: str
    question: str
    answers: tuple[str, ...]


def _read_json(path: Path, what: str) -> Any:
    if not path.is_file():
        raise NeckkitError(f"{what} file {path} does not exist")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise NeckkitError(f"{what} file {path} is not valid JSON ({error})") from None


def _texts(value: Any, where: str) -> list[str]:
    texts = [value] if isinstance(value, str) else value
    if not isinstance(texts, list) or not texts or not all(isinstance(t, str) and t.strip() for t in texts):
        raise NeckkitError(f"{where} must be a non-empty string or list of non-empty strings")
    return texts


def _coco_captions(data: dict[str, Any], path: Path) -> dict[str, list[str]]:
    try:
        names = {image["id"]: str(image["file_name"]) for image in data["images"]}
        captions: dict[str, list[str]] = {}
        for note in data["annotations"]:
            if note["image_id"] not in names:
                raise NeckkitError(f"captions file {path}: annotation for unknown image_id {note['image_id']!r}")
            captions.setdefault(names[note["image_id"]], []).append(_texts(note["caption"], "a caption")[0])
    except (KeyError, TypeError) as error:
        raise NeckkitError(f"captions file {path} is not COCO captions JSON (missing {error})") from None
    return captions


def load_captions(path: str | Path) -> dict[str, list[str]]:
    """Reference captions per image name (either format in the module docstring)."""
    path = Path(path)
    data = _read_json(path, "captions")
    if isinstance(data, dict) and "annotations" in data:
        captions = _coco_captions(data, path)
    elif isinstance(data, dict):
        captions = {str(name): _texts(value, f"captions file {path}: entry {name!r}") for name, value in data.items()}
    else:
        raise NeckkitError(f"captions file {path} must hold a JSON object ({{image: [captions]}} or COCO format)")
    if not captions:
        raise NeckkitError(f"captions file {path} holds no captions")
    return captions


def load_questions(path: str | Path) -> list[Question]:
    """Questions with their human answers (format in the module docstring)."""
    path = Path(path)
    data = _read_json(path, "questions")
    items = data.get("questions") if isinstance(data, dict) else data
    if not isinstance(items, list) or not items:
        raise NeckkitError(f"questions file {path} must hold a non-empty list of {{image, question, answers}}")
    questions = []
    for index, item in enumerate(items):
        if not isinstance(item, dict) or not {"image", "question", "answers"} <= item.keys():
            raise NeckkitError(f"questions file {path}: item {index} needs the keys image, question and answers")
        where = f"questions file {path}: item {index}"
        questions.append(
            Question(str(item["image"]), _texts(item["question"], f"{where} question")[0],
                     tuple(_texts(item["answers"], f"{where} answers")))
        )
    return questions


def match_keys(wanted: Iterable[str], image_keys: list[str], what: str) -> dict[str, str]:
    """Map each annotation's image name onto an image key (relative path, or a unique file name).

    Names that match no image are refused, naming the first of them: a typo should not silently
    shrink the evaluation.
    """
    by_name: dict[str, list[str]] = {}
    for key in image_keys:
        by_name.setdefault(key.rsplit("/", 1)[-1], []).append(key)
    mapping, missing = {}, []
    for name in wanted:
        if name in image_keys:
            mapping[name] = name
        elif len(by_name.get(name, [])) == 1:
            mapping[name] = by_name[name][0]
        else:
            missing.append(name)
    if missing:
        raise NeckkitError(
            f"{what} name {len(missing)} image(s) not in the data folder (or not unique by file name), "
            f"e.g. {missing[0]!r}"
        )
    return mapping
