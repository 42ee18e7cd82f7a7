"""Caption (BLEU, CIDEr-D, METEOR, SPICE, PTB tokenisation) and VQA scoring against hand-computed values."""

from __future__ import annotations

import importlib.util
import math
import shutil
import subprocess
import sys
import threading

import pytest

from neckkit.errors import NeckkitError
from neckkit.evaluation import text_metrics
from neckkit.evaluation.text_metrics import (
    JAVA_MISSING,
    normalize_answer,
    score_captions,
    simple_tokens,
    tokenize_captions,
    vqa_accuracy,
)

HAS_JAVA = shutil.which("java") is not None
needs_pycocoevalcap = pytest.mark.skipif(
    importlib.util.find_spec("pycocoevalcap") is None, reason="needs pycocoevalcap (neckkit[eval])"
)

# Lower case without punctuation, so every tokenizer leaves them as they are.
CANDIDATES = {"img1": "a cat sitting on a blue mat", "img2": "two dogs play"}
REFERENCES = {
    "img1": ["a cat sitting on a red mat", "a black cat on a mat"],
    "img2": ["two dogs play in the snow", "a dog in snow"],
}


def fast_scores(candidates=CANDIDATES, references=REFERENCES, **kwargs):
    """BLEU and CIDEr only: no Java process is started."""
    return score_captions(candidates, references, **{"tokenizer": "simple", "meteor": False, "spice": False, **kwargs})


@pytest.fixture
def no_java(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shutil, "which", lambda name, *args, **kwargs: None)


# ----------------------------------------------------------------------------------------------- BLEU, CIDEr


@needs_pycocoevalcap
def test_bleu_is_corpus_bleu_with_the_closest_reference_length():
    # pycocoevalcap's Bleu sums clipped n-gram matches, candidate n-grams and lengths over the
    # corpus before the geometric mean and brevity penalty (option "closest").
    # img1 "a cat sitting on a blue mat" (7 words) vs "a cat sitting on a red mat" / "a black cat on a mat":
    #   1-grams a,a,cat,sitting,on,mat match (a clipped at 2), blue does not   -> 6/7
    #   2-grams a cat, cat sitting, sitting on, on a match; a blue, blue mat not -> 4/6
    #   3-grams a cat sitting, cat sitting on, sitting on a match               -> 3/5
    #   4-grams a cat sitting on, cat sitting on a match                        -> 2/4
    #   closest reference length to 7 among (7, 6): 7
    # img2 "two dogs play" (3 words) vs "two dogs play in the snow" / "a dog in snow":
    #   1-grams 3/3, 2-grams 2/2, 3-grams 1/1, 4-grams 0/0; closest length to 3 among (6, 4): 4
    # corpus: p1 = 9/10, p2 = 6/8, p3 = 4/6, p4 = 2/4; length 10 vs reference length 11
    #   brevity penalty exp(1 - 11/10) = exp(-0.1) ("shortest" would give 10 and no penalty)
    scores = fast_scores()
    penalty = math.exp(-0.1)
    assert scores.bleu1 == pytest.approx(0.9 * penalty, abs=1e-6)
    assert scores.bleu2 == pytest.approx((0.9 * 0.75) ** (1 / 2) * penalty, abs=1e-6)
    assert scores.bleu3 == pytest.approx((0.9 * 0.75 * 2 / 3) ** (1 / 3) * penalty, abs=1e-6)
    assert scores.bleu4 == pytest.approx((0.9 * 0.75 * 2 / 3 * 0.5) ** (1 / 4) * penalty, abs=1e-6)


@needs_pycocoevalcap
def test_cider_d_by_hand():
    # CIDEr-D (pycocoevalcap Cider, n = 1..4, sigma = 6):
    # document frequency df(g) = number of images whose references contain g; idf = log(2) - log(max(1, df)).
    #   Only the unigram "a" is in both images' references: idf 0. Every other n-gram, including
    #   candidate n-grams found in no reference (df 0 -> max(1, 0)), has idf log 2, which cancels in
    #   the cosines below; so a vector is its n-gram counts with "a" removed.
    # sim_n(c, r) = sum_g min(c_g, r_g) * r_g / (|c| |r|) * exp(-delta^2 / (2 * 6^2)), with delta the
    #   length difference (pycocoevalcap counts length in bigrams, the same difference here).
    # img1 c = "a cat sitting on a blue mat", r1 = "a cat sitting on a red mat" (delta 0),
    #   r2 = "a black cat on a mat" (delta 1, penalty exp(-1/72)):
    #   n=1: c {cat sitting on blue mat}, r1 {cat sitting on red mat} -> 4/5; r2 {black cat on mat} -> 3/(sqrt5*2)
    #   n=2: c 6 bigrams, r1 6 (4 shared) -> 4/6; r2 5 (only "on a" shared) -> 1/sqrt30
    #   n=3: c 5, r1 5 (3 shared) -> 3/5; r2 none shared -> 0
    #   n=4: c 4, r1 4 (2 shared) -> 2/4; r2 0
    #   score = 10 * mean over n of the sum over references / 2 references
    #         = 10/8 * (4/5 + 2/3 + 3/5 + 1/2 + exp(-1/72) * (3/(2*sqrt5) + 1/sqrt30))
    # img2 c = "two dogs play", r1 = "two dogs play in the snow" (delta -3, penalty exp(-9/72)),
    #   r2 = "a dog in snow" (shares nothing with c):
    #   n=1: 3/(sqrt3*sqrt6) = 1/sqrt2; n=2: 2/(sqrt2*sqrt5) = sqrt(2/5); n=3: 1/(1*2) = 1/2; n=4: c empty -> 0
    #   score = 10/8 * exp(-1/8) * (1/sqrt2 + sqrt(2/5) + 1/2)
    cider1 = 10 / 8 * (4 / 5 + 2 / 3 + 3 / 5 + 1 / 2 + math.exp(-1 / 72) * (3 / (2 * math.sqrt(5)) + 1 / math.sqrt(30)))
    cider2 = 10 / 8 * math.exp(-1 / 8) * (1 / math.sqrt(2) + math.sqrt(2 / 5) + 1 / 2)
    scores = fast_scores()
    assert scores.per_image_cider == pytest.approx({"img1": cider1, "img2": cider2}, abs=1e-6)
    assert scores.cider == pytest.approx((cider1 + cider2) / 2, abs=1e-6)
    assert scores.cider == pytest.approx(3.1448116, abs=1e-6)


@needs_pycocoevalcap
def test_cider_is_zero_for_a_single_image():
    # Every reference n-gram has df = 1 = the number of images: idf log(1) - log(1) = 0.
    scores = fast_scores({"img1": CANDIDATES["img1"]}, {"img1": REFERENCES["img1"]})
    assert scores.cider == 0.0
    assert scores.bleu1 > 0.5


@needs_pycocoevalcap
def test_result_fields_and_as_dict():
    scores = fast_scores()
    record = scores.as_dict()
    assert record["tokenizer"] == "simple"
    assert record["meteor"] is None and record["spice"] is None
    assert record["skipped"] == {"meteor": "not requested", "spice": "not requested"}
    assert set(record["per_image_cider"]) == {"img1", "img2"}


# ----------------------------------------------------------------------------------------------- tokenizers

SENTENCES = {
    "A man, riding a horse.": ["a", "man", "riding", "a", "horse"],
    "It's a dog's toy; don't (really) go -- now...": [
        "it", "'s", "a", "dog", "'s", "toy", "do", "n't", "-lrb-", "really", "-rrb-", "go", "now",
    ],
    '"Two cats," she said: "they can\'t sleep!"': ["two", "cats", "she", "said", "they", "ca", "n't", "sleep"],
    "The U.S. flag costs $5.00 at 3:30 p.m. in St. Louis.": [
        "the", "u.s.", "flag", "costs", "$", "5.00", "at", "3:30", "p.m.", "in", "st.", "louis",
    ],
    "A 10-year-old boy's T-shirt isn't wet?!": ["a", "10-year-old", "boy", "'s", "t-shirt", "is", "n't", "wet", "?!"],
    "Vitamin C. Vitamin D. The end": ["vitamin", "c.", "vitamin", "d", "the", "end"],
}  # fmt: skip


@pytest.mark.parametrize("sentence", list(SENTENCES))
def test_simple_tokenizer(sentence):
    # PTB conventions: clitics split ("do n't", "'s"), brackets become -lrb-/-rrb- (pycocoevalcap's
    # filter lists them in upper case, so they stay), "?!" is kept while "!", ",", "." are dropped,
    # abbreviations keep their period, and an initial loses it before a sentence start ("d. The").
    assert simple_tokens(sentence) == SENTENCES[sentence]


@needs_pycocoevalcap
def test_simple_tokenizer_agrees_with_ptb():
    if not HAS_JAVA:
        pytest.skip("needs Java")
    captions = {str(index): [sentence] for index, sentence in enumerate(SENTENCES)}
    ptb, used = tokenize_captions(captions, "ptb")
    simple, _ = tokenize_captions(captions, "simple")
    assert used == "ptb"
    assert ptb == simple
    assert ptb == {str(index): [" ".join(tokens)] for index, tokens in enumerate(SENTENCES.values())}


@needs_pycocoevalcap
def test_ptb_tokenization_matches_pycocoevalcaps_own_tokenizer():
    if not HAS_JAVA:
        pytest.skip("needs Java")
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    captions = {"a": list(SENTENCES)[:3], "b": ["", "  Two\tdogs!  "], "c": list(SENTENCES)[3:]}
    ours, _ = tokenize_captions(captions, "ptb")
    theirs = PTBTokenizer().tokenize({key: [{"caption": text} for text in texts] for key, texts in captions.items()})
    assert ours == theirs
    assert ours["b"] == ["", "two dogs"]


@needs_pycocoevalcap
def test_punctuation_list_is_pycocoevalcaps():
    from pycocoevalcap.tokenizer.ptbtokenizer import PUNCTUATIONS

    assert text_metrics.PTB_PUNCTUATIONS == frozenset(PUNCTUATIONS)


def test_auto_tokenizer_without_java_is_simple(no_java):
    tokenized, used = tokenize_captions({"x": ["A dog.", "Don't!"]})
    assert used == "simple"
    assert tokenized == {"x": ["a dog", "do n't"]}
    with pytest.raises(NeckkitError, match="PTB tokenizer needs a Java runtime"):
        tokenize_captions({"x": ["A dog."]}, "ptb")


@needs_pycocoevalcap
def test_java_failure_falls_back_only_in_auto_mode(monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name, *args, **kwargs: "/usr/bin/java")

    def failing_java(command, **kwargs):
        return subprocess.CompletedProcess(command, 1, stdout="", stderr="Error: Could not find or load main class\n")

    monkeypatch.setattr(subprocess, "run", failing_java)
    tokenized, used = tokenize_captions({"x": ["A dog."]}, "auto")
    assert (tokenized, used) == ({"x": ["a dog"]}, "simple")
    with pytest.raises(NeckkitError, match="exited with status 1: Error: Could not find or load main class"):
        tokenize_captions({"x": ["A dog."]}, "ptb")
    scores = score_captions(CANDIDATES, REFERENCES, meteor=False, spice=False)
    assert scores.tokenizer == "simple"
    assert scores.skipped["ptb"].endswith("exited with status 1: Error: Could not find or load main class; "
                                          "used the simple tokenizer")  # fmt: skip


def test_unknown_tokenizer():
    with pytest.raises(NeckkitError, match="unknown tokenizer 'nltk'"):
        tokenize_captions({"x": ["a"]}, "nltk")


# ----------------------------------------------------------------------------------------------- METEOR, SPICE


@needs_pycocoevalcap
def test_meteor_without_java_is_skipped(no_java):
    scores = score_captions(CANDIDATES, REFERENCES, spice=False)
    assert scores.meteor is None
    assert scores.per_image_meteor == {}
    assert scores.skipped["meteor"] == JAVA_MISSING == "needs a Java runtime (java not found)"
    assert scores.tokenizer == "simple"
    assert scores.bleu1 == pytest.approx(fast_scores().bleu1)


@needs_pycocoevalcap
def test_meteor_with_java(monkeypatch):
    if not HAS_JAVA:
        pytest.skip("needs Java")
    from pycocoevalcap.meteor import meteor as meteor_module

    started = []

    class RecordedMeteor(meteor_module.Meteor):
        def __init__(self):
            super().__init__()
            started.append(self)

    monkeypatch.setattr(meteor_module, "Meteor", RecordedMeteor)
    candidates = {"same": "A man is riding a horse on the beach.", "other": "A plate of pasta with tomato sauce."}
    references = {"same": ["A man is riding a horse on the beach."], "other": ["Two children fly a kite in a park."]}
    scores = score_captions(candidates, references, tokenizer="ptb", spice=False)
    assert scores.tokenizer == "ptb"
    assert "meteor" not in scores.skipped
    assert 0 < scores.meteor <= 1
    assert scores.per_image_meteor["same"] > scores.per_image_meteor["other"]
    assert scores.per_image_meteor["same"] == pytest.approx(1.0, abs=0.01)
    (scorer,) = started
    assert scorer.meteor_p.poll() is not None  # the JVM is gone
    assert scorer.meteor_p.stdin.closed and scorer.meteor_p.stdout.closed
    assert not scorer.lock.locked()


@needs_pycocoevalcap
def test_a_failing_meteor_is_skipped_and_stopped(monkeypatch):
    # A stand-in for a JVM that dies at once (here: a Python process that writes one stderr line).
    from pycocoevalcap.meteor import meteor as meteor_module

    started = []

    class DyingMeteor(meteor_module.Meteor):
        def __init__(self):
            script = "import sys; sys.stderr.write('Error: Could not reserve enough space for object heap\\n')"
            pipes = {"stdin": subprocess.PIPE, "stdout": subprocess.PIPE, "stderr": subprocess.PIPE}
            self.meteor_p = subprocess.Popen([sys.executable, "-c", script], **pipes)
            self.meteor_p.wait()  # dead before the first write: flushing stdin raises BrokenPipeError
            self.lock = threading.Lock()
            started.append(self)

    monkeypatch.setattr(meteor_module, "Meteor", DyingMeteor)
    monkeypatch.setattr(shutil, "which", lambda name, *args, **kwargs: "/usr/bin/java")
    scores = score_captions(CANDIDATES, REFERENCES, tokenizer="simple", spice=False)
    assert scores.meteor is None
    assert scores.skipped["meteor"] == "METEOR failed: Error: Could not reserve enough space for object heap"
    assert scores.bleu1 == pytest.approx(fast_scores().bleu1)
    # Meteor.compute_score leaves its lock held when it raises; Meteor.__del__ would then block forever.
    (scorer,) = started
    assert not scorer.lock.locked()
    assert scorer.meteor_p.poll() is not None


@needs_pycocoevalcap
def test_spice_is_skipped_without_its_models(monkeypatch, tmp_path):
    from pycocoevalcap.spice import get_stanford_models

    def no_download(*args, **kwargs):
        raise AssertionError("SPICE must not download anything")

    monkeypatch.setattr(get_stanford_models, "urlretrieve", no_download)
    monkeypatch.setattr(get_stanford_models, "SPICEDIR", str(tmp_path))  # a pycocoevalcap never run online
    monkeypatch.setattr(shutil, "which", lambda name, *args, **kwargs: "/usr/bin/java")
    scores = fast_scores(spice=True)
    assert scores.spice is None
    assert scores.skipped["spice"] == (
        "needs the Stanford CoreNLP jars stanford-corenlp-3.6.0.jar and stanford-corenlp-3.6.0-models.jar "
        f"in {tmp_path / 'lib'} (pycocoevalcap downloads them)"
    )


@needs_pycocoevalcap
def test_spice_without_java_is_skipped(no_java):
    scores = fast_scores(spice=True)
    assert scores.spice is None
    assert scores.skipped["spice"] == JAVA_MISSING


# ----------------------------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("candidates", "references", "message"),
    [
        ({}, {}, "at least one image"),
        ({"a": "x", "b": "y"}, {"a": ["x"]}, "image 'b' has a candidate caption but no reference captions"),
        ({"a": "x"}, {"a": ["x"], "c": ["z"]}, "image 'c' has reference captions but no candidate caption"),
        ({"a": "x"}, {"a": []}, "image 'a' needs a list of at least one reference caption"),
        ({"a": "x"}, {"a": "x"}, "image 'a' needs a list of at least one reference caption"),
        ({"a": None}, {"a": ["x"]}, "the candidate caption of image 'a' is not a string"),
        pytest.param(
            {"a": "x"}, {"a": ["...", "!"]}, "every reference caption is empty after tokenization",
            marks=needs_pycocoevalcap,
        ),
    ],
)
def test_bad_inputs(candidates, references, message):
    with pytest.raises(NeckkitError, match=message):
        fast_scores(candidates, references)


def test_missing_pycocoevalcap_gives_the_install_hint(monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name, *args, **kwargs: "/usr/bin/java")
    for name in [name for name in sys.modules if name.split(".")[0] == "pycocoevalcap"] + ["pycocoevalcap"]:
        monkeypatch.setitem(sys.modules, name, None)  # import now raises ImportError
    with pytest.raises(NeckkitError) as error:
        score_captions(CANDIDATES, REFERENCES)
    assert str(error.value) == "caption scoring needs pycocoevalcap: pip install 'neckkit[eval]'"
    _, used = tokenize_captions({"x": ["A dog."]})
    assert used == "simple"
    with pytest.raises(NeckkitError, match="pip install 'neckkit\\[eval\\]'"):
        tokenize_captions({"x": ["A dog."]}, "ptb")


# ----------------------------------------------------------------------------------------------- VQA


@pytest.mark.parametrize(("matches", "accuracy"), [(0, 0.0), (1, 0.3), (2, 0.6), (3, 0.9), (4, 1.0), (10, 1.0)])
def test_vqa_accuracy_with_ten_answers(matches, accuracy):
    # Leaving out each of the 10 answers in turn: with m matches, m subsets see m - 1 matches and
    # 10 - m see m; e.g. m = 2: (2 * min(1, 1/3) + 8 * min(1, 2/3)) / 10 = 0.6.
    humans = ["2"] * matches + ["3"] * (10 - matches)
    assert vqa_accuracy("two", humans) == pytest.approx(accuracy, abs=1e-12)


def test_vqa_accuracy_with_fewer_answers():
    assert vqa_accuracy("Yes", ["yes"]) == 1.0
    assert vqa_accuracy("no", ["yes"]) == 0.0
    # 3 answers, all matching: each leave-one-out subset holds 2 matches -> 2/3.
    assert vqa_accuracy("yes", ["yes", "yes", "yes"]) == pytest.approx(2 / 3)
    # 5 answers, 4 matching: 4 subsets see 3 (-> 1), 1 sees 4 (-> 1).
    assert vqa_accuracy("yes", ["yes"] * 4 + ["no"]) == 1.0
    with pytest.raises(NeckkitError, match="at least one human answer"):
        vqa_accuracy("yes", [])


@pytest.mark.parametrize(
    ("raw", "normalized"),
    [
        ("Two", "2"),
        ("a dog.", "dog"),
        ("The Dog", "dog"),
        ("dont", "don't"),
        ("Yes!", "yes"),
        ("red, white", "red white"),  # ", " -> removed; the words stay apart
        ("red,white", "red white"),  # a comma joining two words becomes a space
        ("1,000", "1000"),  # a comma between digits is removed
        ("3.5", "3.5"),  # a period before a digit stays
        ("  ten\tdogs\n", "10 dogs"),
        ("an apple", "apple"),
        ("black and white", "black and white"),
    ],
)
def test_normalize_answer(raw, normalized):
    assert normalize_answer(raw) == normalized


def test_vqa_accuracy_normalizes_both_sides():
    assert vqa_accuracy("Two.", ["2"] * 3 + ["three"] * 7) == pytest.approx(0.9)
    assert vqa_accuracy("a dog", ["Dog"] * 10) == 1.0


def test_text_metrics_reexports_the_split_modules_names():
    from neckkit.evaluation import caption_scores, caption_tokenizer, vqa

    for module in (caption_tokenizer, caption_scores, vqa):
        for name in module.__all__:
            assert getattr(text_metrics, name) is getattr(module, name), name
    assert sorted(text_metrics.__all__) == sorted(caption_tokenizer.__all__ + caption_scores.__all__ + vqa.__all__)
    assert text_metrics._tokenize is caption_tokenizer._tokenize  # private names older code reads


@needs_pycocoevalcap
def test_an_evaluation_starts_one_meteor_process_for_all_its_rows(monkeypatch):
    """Evaluator.rows scores every (point, path) row's captions with one METEOR process, stopped after."""
    from pycocoevalcap.meteor import meteor as meteor_module

    from neckkit.evaluation.sweep import Evaluator, Tasks

    started = []

    class FakeMeteor:
        def __init__(self):
            self.meteor_p = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"],
                                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            self.lock = threading.Lock()
            self.calls = 0
            started.append(self)

        def compute_score(self, gts, res):
            self.calls += 1
            return 0.25 * self.calls, [0.5] * len(res)

    monkeypatch.setattr(meteor_module, "Meteor", FakeMeteor)
    monkeypatch.setattr(shutil, "which", lambda name, *args, **kwargs: "/usr/bin/java")
    evaluator = Evaluator([], encoder=None, tasks=Tasks(captions=REFERENCES))  # type: ignore[arg-type]
    for point, path in (("uncompressed", "uncompressed"), ("a", "reconstruction"), ("a", "neck")):
        evaluator.records += [{"image": key, "point": point, "path": path, "caption": caption}
                              for key, caption in CANDIDATES.items()]
    rows, _ = evaluator.rows({"tokenizer": "simple", "spice": False})
    (scorer,) = started
    assert scorer.calls == 3 and sorted(row["meteor"] for row in rows) == [0.25, 0.5, 0.75]
    assert scorer.meteor_p.poll() is not None  # stopped once the rows are scored
