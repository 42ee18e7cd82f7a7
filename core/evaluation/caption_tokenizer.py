"""Caption tokenisation as the COCO caption evaluation does it, before any score is computed.

The COCO evaluation (pycocoevalcap) PTB-tokenises every caption, lower-cases it and drops
punctuation tokens. ``"ptb"`` runs that Stanford PTB tokenizer (Java); ``"simple"`` is a pure-Python
imitation that agrees with it on ordinary English, used when Java or pycocoevalcap is missing.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

from neckkit.errors import NeckkitError, first_line

__all__ = ["JAVA_MISSING", "PTB_PUNCTUATIONS", "TOKENIZERS", "simple_tokens", "tokenize_captions"]

TOKENIZERS = ("auto", "ptb", "simple")
JAVA_MISSING = "needs a Java runtime (java not found)"

# pycocoevalcap.tokenizer.ptbtokenizer.PUNCTUATIONS: the PTB tokens the COCO evaluation drops. The
# bracket entries are upper case while ``-lowerCase`` output is not, so "(" survives as "-lrb-".
PTB_PUNCTUATIONS = frozenset(
    ["''", "'", "``", "`", "-LRB-", "-RRB-", "-LCB-", "-RCB-", ".", "?", "!", ",", ":", "-", "--", "...", ";"]
)


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
