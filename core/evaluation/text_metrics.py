"""Caption and VQA scores for ``neckkit eval``: MLLM answers on compressed images against human references.

Captions are scored the way the COCO caption evaluation (pycocoevalcap) scores them: PTB-tokenised,
lower-cased, punctuation dropped, then BLEU-1..4, METEOR, CIDEr-D and SPICE. BLEU and CIDEr are pure
Python; METEOR, SPICE and the PTB tokenizer run Java. Without Java the tokenizer falls back to a
pure-Python imitation and METEOR/SPICE are reported as skipped with the reason.

VQA answers are scored with the official VQA accuracy (answer normalisation and the mean of
``min(1, matches / 3)`` over the leave-one-out subsets of the human answers).
"""

from __future__ import annotations

import dataclasses
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from neckkit.errors import NeckkitError, first_line

TOKENIZERS = ("auto", "ptb", "simple")
INSTALL_HINT = "caption scoring needs pycocoevalcap: pip install 'neckkit[eval]'"
JAVA_MISSING = "needs a Java runtime (java not found)"

# pycocoevalcap.tokenizer.ptbtokenizer.PUNCTUATIONS: the PTB tokens the COCO evaluation drops. The
# bracket entries are upper case while ``-lowerCase`` output is not, so "(" survives as "-lrb-".
PTB_PUNCTUATIONS = frozenset(
    ["''", "'", "``", "`", "-LRB-", "-RRB-", "-LCB-", "-RCB-", ".", "?", "!", ",", ":", "-", "--", "...", ";"]
)


@dataclass
class CaptionScores:
    """Corpus-level caption scores; ``None`` where a metric was skipped (``skipped`` says why)."""

    bleu1: float
    bleu2: float
    bleu3: float
    bleu4: float
    cider: float
    meteor: float | None
    spice: float | None
    tokenizer: str  # "ptb" or "simple": the tokenizer actually used
    skipped: dict[str, str] = field(default_factory=dict)  # metric (or "ptb") -> one-line reason
    per_image_cider: dict[str, float] = field(default_factory=dict)
    per_image_meteor: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# ---------------------------------------------------------------------------------------------- tokenizers


def tokenize_captions(captions: dict[str, list[str]], tokenizer: str = "auto") -> tuple[dict[str, list[str]], str]:
    """Tokenise ``{id: [caption, ...]}`` to ``{id: ["space separated tokens", ...]}``.

    ``"ptb"`` runs the Stanford PTB tokenizer of pycocoevalcap (Java); ``"simple"`` is a pure-Python
    imitation that agrees with it on ordinary English; ``"auto"`` uses PTB when Java and pycocoevalcap
    are present and falls back to simple if Java fails. Returns the tokenised captions and the
    tokenizer actually used.
    """
    ids = [key for key, texts in captions.items() for _ in texts]
    flat = [text for texts in captions.values() for text in texts]
    tokens, used, _ = _tokenize(flat, tokenizer)
    tokenized: dict[str, list[str]] = {key: [] for key in captions}
    for key, caption in zip(ids, tokens, strict=True):
        tokenized[key].append(caption)
    return tokenized, used


def _tokenize(sentences: list[str], tokenizer: str) -> tuple[list[str], str, str | None]:
    """Tokenised sentences, the tokenizer used, and why PTB was not used in auto mode (or ``None``)."""
    if tokenizer not in TOKENIZERS:
        raise NeckkitError(f"unknown tokenizer {tokenizer!r}: use one of {', '.join(TOKENIZERS)}")
    if tokenizer == "simple":
        return _simple_tokenize(sentences), "simple", None
    reason = _ptb_unavailable()
    if reason is None:
        try:
            return _ptb_tokenize(sentences), "ptb", None
        except NeckkitError as error:
            reason = str(error)
    if tokenizer == "ptb":
        raise NeckkitError(reason)
    return _simple_tokenize(sentences), "simple", reason


def _ptb_unavailable() -> str | None:
    if shutil.which("java") is None:
        return f"the PTB tokenizer {JAVA_MISSING}"
    try:
        import pycocoevalcap.tokenizer.ptbtokenizer  # noqa: F401
    except ImportError:
        return "the PTB tokenizer needs pycocoevalcap: pip install 'neckkit[eval]'"
    return None


def _ptb_tokenize(sentences: list[str]) -> list[str]:
    """The Java command pycocoevalcap's ``PTBTokenizer`` runs, with the same token filter.

    ``PTBTokenizer.tokenize`` writes its input to a temporary file inside site-packages, ignores
    java's exit status and silently drops captions when java prints fewer lines; this feeds stdin
    and checks both. Blank captions are not sent (PTB's look-ahead skips blank lines anyway).
    """
    from pycocoevalcap.tokenizer import ptbtokenizer

    lines = [" ".join(text.split()) for text in sentences]  # one line each, whatever the whitespace
    todo = [index for index, line in enumerate(lines) if line]
    if not todo:
        return [""] * len(lines)
    command = ["java", "-cp", ptbtokenizer.STANFORD_CORENLP_3_4_1_JAR, "edu.stanford.nlp.process.PTBTokenizer"]
    command += ["-preserveLines", "-lowerCase"]
    try:
        result = subprocess.run(
            command,
            cwd=Path(ptbtokenizer.__file__).parent,
            input="\n".join(lines[index] for index in todo),
            capture_output=True,
            encoding="utf-8",
        )
    except OSError as error:
        raise NeckkitError(f"the PTB tokenizer could not start java: {first_line(error)}") from error
    if result.returncode != 0:
        status, detail = result.returncode, _last_line(result.stderr)
        raise NeckkitError(f"the PTB tokenizer (java) exited with status {status}: {detail}")
    output = result.stdout.split("\n")
    if len(output) == len(todo) + 1 and output[-1] == "":
        output.pop()
    if len(output) != len(todo):
        raise NeckkitError(f"the PTB tokenizer returned {len(output)} lines for {len(todo)} captions")
    tokenized = [""] * len(lines)
    for index, line in zip(todo, output, strict=True):
        tokenized[index] = " ".join(word for word in line.rstrip().split(" ") if word not in PTB_PUNCTUATIONS)
    return tokenized


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else "no error output"


# The simple tokenizer imitates PTBTokenizer (CoreNLP 3.4.1, -lowerCase) followed by the PTB_PUNCTUATIONS
# filter: tokens PTB would emit and the filter drops are deleted straight away.
_CHAR_MAP = str.maketrans(
    {
        "\u201c": '"', "\u201d": '"', "\u201e": '"', "\u00ab": '"', "\u00bb": '"', "`": '"',  # quotes: dropped
        "\u2018": "'", "\u2019": "'",  # curly apostrophes: it’s -> it 's
        "\u2014": " -- ", "\u2013": " -- ", "\u2010": "-", "\u2026": " ... ",  # dashes, ellipsis
        "\u00a3": " # ", "\u20ac": " $ ", "\u00a2": " cents ",  # PTB3 currency normalisation
    }
)  # fmt: skip
_BRACKETS = {"(": "-lrb-", ")": "-rrb-", "[": "-lsb-", "]": "-rsb-", "{": "-lcb-", "}": "-rcb-"}
_BRACKET = re.compile(r"[(){}\[\]]")
_SYMBOL = re.compile(r"([*+=&%|^~$\u00a5\\]|#(?=\d))")  # always a token of their own
_DASHES_AND_ELLIPSES = re.compile(r"-{2,}|\.{3,}(?=\S)")  # "--" and "..." tokens, both dropped
_DROPPED_RUN = re.compile(r"[.,;:'\-]+")  # a word made of these becomes dropped tokens only
_BANG_RUN = re.compile(r"[!?]+")  # "!" and "?" are dropped, "!!" and "?!" are kept
_TRAILING = re.compile(r"(?:\.+|[!?]+|[,;:'\-]+)$")
_LEADING = re.compile(r"^(?:[!?]+|[,;:'\-]+|\.+)")
_INNER = re.compile(r";|(?<!\d)[,:](?!//)|[,:](?![\d/])")  # "1,000", "3:30" and "http://" stay whole
_CLITIC = re.compile(r"(.+?)(n't|'s|'d|'ll|'re|'ve|'m)")
_NUMBER_UNIT = re.compile(r"(\d*[.:]\d+)([a-z]+)")  # 1.5m -> 1.5 m, 10:30am -> 10:30 am (10am stays)
_ACRONYM = re.compile(r"[a-z](?:\.[a-z])+")  # u.s, e.g, p.m keep their final period
_ABBREVIATIONS = frozenset(
    "mr mrs ms dr sr jr st prof gov gen sen rep mt ft ave blvd rd dept corp inc ltd co vs etc "
    "jan feb mar apr aug sept oct nov dec".split()
)
_WORD_SPLITS = {
    "cannot": ["can", "not"], "gonna": ["gon", "na"], "gotta": ["got", "ta"], "wanna": ["wan", "na"],
    "lemme": ["lem", "me"], "gimme": ["gim", "me"], "'tis": ["'t", "is"], "'twas": ["'t", "was"],
}  # fmt: skip
# The capitalised words after which PTBTokenizer 3.4.1 reads "x." as the end of a sentence (found by probing it).
_SENTENCE_STARTS = frozenset(
    "A After An As At But Earlier He Her Here However If In It Last Many Now Once One Other Our She Since So Some "
    "Such That The Their Then There These They This We What When While Yet You Mr. Ms.".split()
)
_APOSTROPHE_WORDS = frozenset(["'s", "'d", "'ll", "'re", "'ve", "'m", "'em", "'n", "'t", "n't"])


def _simple_tokenize(sentences: list[str]) -> list[str]:
    tokenized, following = [], ""
    for text in reversed(sentences):
        tokenized.append(" ".join(simple_tokens(text, following)))
        following = text if text.strip() else following
    return tokenized[::-1]


def simple_tokens(caption: str, next_caption: str = "") -> list[str]:
    """PTB-like tokens of one caption, lower-cased, without the punctuation PTBTokenizer's filter drops.

    ``next_caption`` is the caption tokenised after this one: PTB splits the period off an initial
    ("the letter a.") when the next word, even on the next line, is a common sentence start ("The").
    """
    words = _words(caption)
    following = [*words[1:], *_words(next_caption)[:1], ""]
    tokens = [token for word, after in zip(words, following, strict=False) for token in _split_word(word, after)]
    return [token for token in tokens if token not in PTB_PUNCTUATIONS]


def _words(caption: str) -> list[str]:
    """Whitespace words with brackets, symbols, quotes, dashes and inner ellipses set apart (case kept)."""
    text = caption.translate(_CHAR_MAP).replace('"', " `` ")
    text = _BRACKET.sub(lambda match: f" {_BRACKETS[match.group()]} ", text)
    return _DASHES_AND_ELLIPSES.sub(" ", _SYMBOL.sub(r" \1 ", text)).split()


def _split_word(word: str, following: str) -> list[str]:
    word = word.lower()
    if _DROPPED_RUN.fullmatch(word):
        return []
    if _BANG_RUN.fullmatch(word) or word in _BRACKETS.values():
        return [word]
    tail: list[str] = []
    while (match := _TRAILING.search(word)) and match.start() > 0:
        word, punctuation = word[: match.start()], match.group()
        if punctuation[0] == "." and _keeps_period(word, sentence_end=not tail and _starts_sentence(following)):
            word += "."  # any further periods are dropped tokens
            break
        tail.insert(0, punctuation)
    head: list[str] = []
    while (match := _LEADING.match(word)) and not _keeps_leading(word):
        head.append(match.group())
        word = word[match.end() :]
    inner = [piece for part in _INNER.sub(" ", word).split() for piece in _split_clitics(part)]
    return [token for token in head + inner + tail if not _DROPPED_RUN.fullmatch(token)]


def _keeps_period(stem: str, sentence_end: bool) -> bool:
    """PTB keeps the period of abbreviations ("st.", "u.s.") and, unless a capital follows, of initials ("b.")."""
    if stem in _ABBREVIATIONS or _ACRONYM.fullmatch(stem):
        return True
    return len(stem) == 1 and stem.isalpha() and not sentence_end


def _starts_sentence(word: str) -> bool:
    return word in _SENTENCE_STARTS or (word.isupper() and word.title() in _SENTENCE_STARTS)


def _keeps_leading(word: str) -> bool:
    if word[0] == "'":
        return word in _APOSTROPHE_WORDS or word in _WORD_SPLITS or word[1:2].isdigit()  # 's, 'tis, '90s
    return word[0] in ".-" and word[1:2].isdigit()  # .5, -3


def _split_clitics(word: str) -> list[str]:
    if word in _WORD_SPLITS:
        return list(_WORD_SPLITS[word])
    if unit := _NUMBER_UNIT.fullmatch(word):
        return [unit.group(1), unit.group(2)]
    match = _CLITIC.fullmatch(word)
    return [*_split_clitics(match.group(1)), match.group(2)] if match else [word]


# ---------------------------------------------------------------------------------------------- captions


def score_captions(
    candidates: dict[str, str],
    references: dict[str, list[str]],
    tokenizer: str = "auto",
    meteor: bool = True,
    spice: bool = True,
) -> CaptionScores:
    """BLEU-1..4, CIDEr-D, METEOR and SPICE of one candidate per image against its references.

    Scores are corpus-level, as in the COCO caption evaluation: BLEU accumulates clipped n-gram
    counts and lengths over all images (brevity penalty with the closest reference length), METEOR
    aggregates its statistics over the corpus, CIDEr-D and SPICE are means over images. CIDEr's
    IDF comes from the references being evaluated, so an n-gram found in every image's references
    weighs nothing: with a single image CIDEr is always 0, and it is only meaningful over a test set.
    METEOR and SPICE need Java (SPICE also the Stanford CoreNLP jars, which pycocoevalcap downloads
    on first use and this function never does); when they cannot run they are ``None`` and
    ``skipped`` says why.
    """
    _check_inputs(candidates, references)
    modules = _pycocoevalcap()
    gts, res, used, ptb_reason = _tokenize_corpus(candidates, references, tokenizer)
    if not any(caption for captions in gts.values() for caption in captions):
        raise NeckkitError("every reference caption is empty after tokenization")

    bleu, _ = modules["Bleu"](4).compute_score(gts, res, verbose=0)
    cider, per_image = modules["Cider"]().compute_score(gts, res)
    scores = CaptionScores(
        *(float(value) for value in bleu),
        cider=float(cider),
        meteor=None,
        spice=None,
        tokenizer=used,
        per_image_cider={key: float(value) for key, value in zip(res, per_image, strict=True)},
    )
    if ptb_reason is not None:
        scores.skipped["ptb"] = f"{ptb_reason}; used the simple tokenizer"
    if meteor:
        scores.meteor, scores.per_image_meteor, reason = _meteor(gts, res)
    else:
        reason = "not requested"
    if reason is not None:
        scores.skipped["meteor"] = reason
    scores.spice, reason = _spice(gts, res) if spice else (None, "not requested")
    if reason is not None:
        scores.skipped["spice"] = reason
    return scores


def _check_inputs(candidates: dict[str, str], references: dict[str, list[str]]) -> None:
    if not candidates:
        raise NeckkitError("caption scoring needs at least one image with a candidate caption")
    for key in candidates:
        if key not in references:
            raise NeckkitError(f"image {key!r} has a candidate caption but no reference captions")
        if not isinstance(candidates[key], str):
            raise NeckkitError(f"the candidate caption of image {key!r} is not a string")
        if isinstance(references[key], str) or not references[key]:
            raise NeckkitError(f"image {key!r} needs a list of at least one reference caption")
    for key in references:
        if key not in candidates:
            raise NeckkitError(f"image {key!r} has reference captions but no candidate caption")


def _tokenize_corpus(
    candidates: dict[str, str], references: dict[str, list[str]], tokenizer: str
) -> tuple[dict[str, list[str]], dict[str, list[str]], str, str | None]:
    """References (gts) and candidates (res) tokenised in two runs, as the COCO evaluation does, by one tokenizer."""
    ids = list(candidates)
    texts = [text for key in ids for text in references[key]]
    tokens, used, reason = _tokenize(texts, tokenizer)
    try:
        candidate_tokens, _, _ = _tokenize([candidates[key] for key in ids], used)
    except NeckkitError as error:
        if tokenizer != "auto":
            raise
        tokens, used, reason = _simple_tokenize(texts), "simple", str(error)
        candidate_tokens = _simple_tokenize([candidates[key] for key in ids])
    gts, position = {}, 0
    for key in ids:
        gts[key] = tokens[position : position + len(references[key])]
        position += len(references[key])
    return gts, {key: [caption] for key, caption in zip(ids, candidate_tokens, strict=True)}, used, reason


def _pycocoevalcap() -> dict[str, Any]:
    try:
        from pycocoevalcap.bleu.bleu import Bleu
        from pycocoevalcap.cider.cider import Cider
    except ImportError as error:
        raise NeckkitError(INSTALL_HINT) from error
    return {"Bleu": Bleu, "Cider": Cider}


def _meteor(gts: dict[str, list[str]], res: dict[str, list[str]]) -> tuple[float | None, dict[str, float], str | None]:
    """Corpus METEOR, per-image METEOR and the reason it was skipped; the Java process is always stopped."""
    if shutil.which("java") is None:
        return None, {}, JAVA_MISSING
    from pycocoevalcap.meteor.meteor import Meteor

    try:
        scorer = Meteor()
    except OSError as error:
        return None, {}, f"could not start METEOR: {first_line(error)}"
    try:
        score, per_image = scorer.compute_score(gts, res)
    except Exception as error:  # a broken METEOR must not sink the other scores
        detail = _stop_meteor(scorer)
        return None, {}, f"METEOR failed: {detail or first_line(error)}"
    _stop_meteor(scorer)
    return float(score), {key: float(value) for key, value in zip(gts, per_image, strict=True)}, None


def _stop_meteor(scorer: Any) -> str:
    """Kill the METEOR JVM and close its pipes; its last stderr line, if any.

    ``Meteor.__del__`` takes ``scorer.lock`` first, and ``compute_score`` leaves it held when it
    raises, so the lock is released here or garbage collection would block forever.
    """
    process, error_output = scorer.meteor_p, ""
    try:
        process.kill()
        process.wait()
        if process.stderr is not None:
            error_output = process.stderr.read().decode("utf-8", "replace")
    finally:
        for stream in (process.stdin, process.stdout, process.stderr):
            try:
                if stream is not None:
                    stream.close()  # stdin may hold unflushed input for a dead JVM: BrokenPipeError
            except OSError:
                pass
        if scorer.lock.locked():
            scorer.lock.release()
    return _last_line(error_output) if error_output.strip() else ""


def _spice(gts: dict[str, list[str]], res: dict[str, list[str]]) -> tuple[float | None, str | None]:
    """Mean SPICE F-score, or ``None`` and why it cannot run here (nothing is downloaded)."""
    missing = spice_unavailable()
    if missing is not None:
        return None, missing
    from pycocoevalcap.spice.spice import Spice

    try:
        score, _ = Spice().compute_score(gts, res)
    except Exception as error:  # e.g. the SPICE jar failing on this Java version
        return None, f"SPICE failed: {first_line(error)}"
    return float(score), None


def spice_unavailable() -> str | None:
    """Why SPICE cannot run without downloading anything, or ``None`` when it can."""
    if shutil.which("java") is None:
        return JAVA_MISSING
    from pycocoevalcap.spice import get_stanford_models as models

    lib = Path(models.SPICEDIR).resolve() / models.SPICELIB
    missing = [name for name in (f"{models.JAR}.jar", f"{models.JAR}-models.jar") if not (lib / name).is_file()]
    if missing:
        return f"needs the Stanford CoreNLP jars {' and '.join(missing)} in {lib} (pycocoevalcap downloads them)"
    return None


# ---------------------------------------------------------------------------------------------- VQA

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
