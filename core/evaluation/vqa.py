"""VQA accuracy: an MLLM's answer against the human answers, as the official VQA evaluation scores it.

Answers are normalised as ``vqaEval.py`` (GT-Vision-Lab/VQA) does, and the score is the mean of
``min(1, matches / 3)`` over the leave-one-out subsets of the human answers.
"""

from __future__ import annotations

import re

from neckkit.errors import NeckkitError

__all__ = ["normalize_answer", "vqa_accuracy"]

# The official VQA evaluation (GT-Vision-Lab/VQA, vqaEval.py) normalisation.
_VQA_PUNCTUATION = tuple(';/[]"{}()=+\\_-><@`,?!')  # each removed, or a space where it joins two words
_DIGIT_COMMA = re.compile(r"(\d)(,)(\d)")
_PERIOD = re.compile(r"(?!<=\d)(\.)(?!\d)")  # sic: a lookahead, so every period not before a digit goes
_NUMBER_WORDS = {"none": "0", "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5"}
_NUMBER_WORDS |= {"six": "6", "seven": "7", "eight": "8", "nine": "9", "ten": "10"}
_ARTICLES = frozenset(["a", "an", "the"])
# The contracted forms the official table restores; its keys are each form with one apostrophe left out.
_CONTRACTED = """
ain't aren't can't could've couldn't couldn't've didn't doesn't don't hadn't hadn't've hasn't haven't he'd he'd've
he's how'd how'll how's isn't it'd it'd've it'll ma'am mightn't mightn't've might've mustn't must've needn't not've
o'clock oughtn't 'ow's'at shan't she'd've should've shouldn't shouldn't've somebody'd've somebody'll somebody's
someone'd someone'd've someone'll someone's something'd something'd've something'll that's there'd there'd've
there're there's they'd they'd've they'll they're they've 'twas wasn't we'd've we've weren't what'll what're what's
what've when's where'd where's where've who'd who'd've who'll who's who've why'll why're why's won't would've
wouldn't wouldn't've y'all y'all'll y'all'd've you'd you'd've you'll you're you've
""".split()
_CONTRACTIONS = {
    form[:index] + form[index + 1 :]: form for form in _CONTRACTED for index, char in enumerate(form) if char == "'"
}


def normalize_answer(text: str) -> str:
    """An answer as the official VQA evaluation compares it.

    Punctuation is removed (or turned into a space between words), periods not followed by a digit
    are dropped, the text is lower-cased, number words become digits ("two" -> "2"), articles are
    removed and apostrophe-less contractions are restored ("dont" -> "don't").
    """
    text = text.replace("\n", " ").replace("\t", " ").strip()
    return _digits_and_articles(_vqa_punctuation(text))


def _vqa_punctuation(text: str) -> str:
    out = text
    remove_all = _DIGIT_COMMA.search(text) is not None
    for mark in _VQA_PUNCTUATION:
        if remove_all or mark + " " in text or " " + mark in text:
            out = out.replace(mark, "")
        else:
            out = out.replace(mark, " ")
    return _PERIOD.sub("", out)


def _digits_and_articles(text: str) -> str:
    words = [_NUMBER_WORDS.get(word, word) for word in text.lower().split()]
    return " ".join(_CONTRACTIONS.get(word, word) for word in words if word not in _ARTICLES)


def vqa_accuracy(answer: str, human_answers: list[str]) -> float:
    """The official VQA accuracy of ``answer``: the mean over leaving out each human answer in turn of
    ``min(1, matches among the others / 3)``, after :func:`normalize_answer` on both sides.

    With 10 human answers (VQA v2) 1, 2 and 3 matches give 0.3, 0.6 and 0.9, and 4 or more give 1.0.
    Fewer answers use the same leave-one-out over however many there are (so 2 or 3 answers can
    give at most 1/3 or 2/3); a single human answer gives 1.0 on a match and 0.0 otherwise.
    """
    if not human_answers:
        raise NeckkitError("VQA accuracy needs at least one human answer")
    predicted = normalize_answer(answer)
    matches = [normalize_answer(human) == predicted for human in human_answers]
    if len(matches) == 1:
        return float(matches[0])
    total = sum(matches)
    return sum(min(1.0, (total - match) / 3) for match in matches) / len(matches)
