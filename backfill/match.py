"""The rules that decide "this is that book": pure functions, no I/O, shared by the
de-duplication of the generators' lists and by the resolver (see
../shared/resolution-anchors.md). Main titles must be EQUAL after normalisation (containment
never matches), no derivative marker or differing volume number, and the first author's
surname must match with compatible given names. The only fuzziness is what the generators
need: two letters swapped in a surname (any one edit in 7+ letters), and, in ``same_book``
alone, one edit in a main title of 20+ characters.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence

from rapidfuzz import fuzz
from rapidfuzz.distance import DamerauLevenshtein

_edits = DamerauLevenshtein.distance  # insertions, deletions, substitutions, adjacent swaps


def _words(text: str) -> tuple[str, ...]:
    return tuple(text.split())


_LETTERS = str.maketrans(
    {"ø": "o", "æ": "ae", "œ": "oe", "ł": "l", "đ": "d", "ð": "d", "þ": "th", "\u0131": "i"}
    | dict.fromkeys("'`\u2019\u02bc")  # apostrophes go: "Philosopher's" -> "philosophers"
)
_DASHES = "-\u2013\u2014"
_NON_WORD = re.compile(r"[\W_]+")
_NOTE = re.compile(r"[(\[][^()\[\]]*[)\]]")
_SUBTITLE = re.compile(rf"\s*(?:[:;]|\s[{_DASHES}]+\s|\u2014|--)\s*")
_ARTICLES = frozenset(_words("the a an"))  # not "die", "la", "el": "Die Trying" is English
_NUMBER_WORDS = _words("zero one two three four five six seven eight nine ten eleven twelve")
_ROMAN = r"(?=[ivx])x{0,3}(?:ix|iv|v?i{0,3})"
_NUM = rf"\d{{1,3}}|{_ROMAN}|{'|'.join(_NUMBER_WORDS)}"
_VOLUME = re.compile(
    rf"(?:\b(?:books?|volumes?|vol|parts?|tome|bk)\s*\.?\s*|#\s*|,\s*(?=\d+\s*[)\]]))({_NUM})\b"
)
_RANGE = re.compile(
    rf"(?:\b(?:books?|vols?|volumes?|parts?)|#)\s*\.?\s*\d+\s*(?:[{_DASHES}]|to|through|and)\s*\d+\b"
    r"|\b(?:\d+|two|three|four|five|six|seven|eight|nine|ten)[-\s]+books?\b"
)
_GENERIC_SUBTITLES = frozenset(
    {"novel", "a novel", "a memoir", "memoir", "a thriller", "stories", "poems", "a love story"}
)
_STOP = frozenset(_words("a an the of and to in on for with"))

#: Words a derivative volume adds to the title of the book it derives from, in
#: normalised form and most specific first. "a novel" is deliberately absent.
DERIVATIVE_MARKERS: tuple[str, ...] = (
    "readers companion", "companion", "readers guide", "reading group guide", "reading guide",
    "discussion guide", "teachers guide", "study guide", "literature guide", "summary",
    "summarized", "summarised", "key takeaways", "conversation starters", "workbook",
    "analysis", "journal", "notebook", "boxed set", "box set", "boxset", "collection",
    "omnibus", "complete series", "sparknotes", "spark notes", "cliffsnotes", "cliffs notes",
    "cliff notes", "york notes", "graphic novel", "graphic history", "adaptation",
    "coloring book", "colouring book", "activity book", "cookbook", "trivia", "quiz book",
    "unofficial", "unauthorized", "unauthorised", "audiobook", "audio book", "audio cd",
    "audio", "unabridged", "abridged", "mp3", "sampler", "excerpt", "sneak peek",
)  # fmt: skip

_HONORIFICS = frozenset(_words("dr mr mrs ms sir dame prof professor rev"))
_SUFFIXES = frozenset(_words("jr sr ii iii iv phd md esq obe cbe kbe"))
_ROLES = frozenset(_words("author editor illustrator translator narrator contributor ed eds"))
_PARTICLES = frozenset(_words("de da di del della der den des du la le van von ter ten st dos"))
_BY = re.compile(r"^\s*(?:written\s+)?by\s+", re.IGNORECASE)
_INITIALS = re.compile(r"\b([A-Z]{2,3})\b")
_AUTHOR_LIST = re.compile(r"\s*(?:;|&|\band\b)\s*", re.IGNORECASE)
_YEAR = re.compile(r"(?<!\d)([12]\d{3})(?!\d)")
_ISO_MONTH = re.compile(r"(?<!\d)([12]\d{3})[-/.](\d{1,2})(?!\d)")
_MONTHS = _words("january february march april may june july august september october november "
                 "december")  # fmt: skip


def _fold(text: str) -> str:
    """NFKC, casefold, accents stripped, '&' -> 'and', apostrophes dropped; punctuation kept."""
    text = unicodedata.normalize("NFKD", unicodedata.normalize("NFKC", text).casefold())
    text = "".join(ch for ch in text if not unicodedata.combining(ch))
    return text.translate(_LETTERS).replace("&", " and ")


def normalise(text: str) -> str:
    """Folded (NFKC, casefold, no accents, "&" -> "and") with punctuation collapsed:
    "Pride & Prejudice!" -> "pride and prejudice", "Cien años" -> "cien anos"."""
    return " ".join(_NON_WORD.sub(" ", _fold(text)).split())


def _drop_article(text: str) -> str:
    words = text.split(" ", 1)
    return words[1] if len(words) == 2 and words[0] in _ARTICLES else text


def _parts(title: str) -> tuple[str, str]:
    """(main title, subtitle), both normalised; bracketed notes belong to neither."""
    title = unicodedata.normalize("NFKC", title)
    bare = _NOTE.sub(" ", title)
    head, *rest = _SUBTITLE.split(bare, maxsplit=1)
    main = normalise(head) or normalise(bare) or normalise(title)
    return _drop_article(main), (normalise(rest[0]) if rest and normalise(head) else "")


def main_title(title: str) -> str:
    """The normalised title without leading article, bracketed notes and subtitle:
    "Dune (Dune Chronicles, Book 1)" -> "dune", "The Road: A Novel" -> "road"."""
    return _parts(title)[0]


def _number(token: str) -> int:
    if token.isdigit():
        return int(token)
    if token in _NUMBER_WORDS:
        return _NUMBER_WORDS.index(token)
    values = [{"i": 1, "v": 5, "x": 10}[ch] for ch in token]
    return sum(-v if v < nxt else v for v, nxt in zip(values, [*values[1:], 0], strict=True))


def _volumes(title: str) -> set[int]:
    """The volume/part/book numbers a title names: "(The Empyrean, 1)", "Book Two", "#3"."""
    return {_number(m) for m in _VOLUME.findall(_fold(title))}


def _markers(text: str) -> dict[str, str]:
    """The markers in ``text`` (key -> the words found); any "books 1-3" range is one key."""
    padded = f" {normalise(text)} "
    found = {m: m for m in DERIVATIVE_MARKERS if f" {m} " in padded}
    if volumes := _RANGE.search(_fold(text)):
        found["range"] = " ".join(volumes.group(0).split())
    return found


def derivative_marker(found: str, wanted: str) -> str | None:
    """The first derivative marker in ``found`` (full title, subtitle and notes included)
    that ``wanted`` lacks: "Summary of Atomic Habits" vs "Atomic Habits" -> "summary"."""
    present = _markers(wanted)
    return next((words for key, words in _markers(found).items() if key not in present), None)


def _subtitles_differ(a: str, b: str) -> bool:
    """Both titles carry a real subtitle and they name different things."""
    if not a or not b or a in _GENERIC_SUBTITLES or b in _GENERIC_SUBTITLES:
        return False
    wa, wb = set(a.split()) - _STOP, set(b.split()) - _STOP
    return not (wa <= wb or wb <= wa) and fuzz.token_set_ratio(a, b) < 85


def _near(a: str, b: str) -> bool:
    """One typo in a long main title (dedupe only): 20+ characters, and the words all equal
    but one of 5+ letters that is one edit away ("Tomorow"), or only a space moved."""
    if min(len(a), len(b)) < 20:
        return False
    words_a, words_b = a.split(), b.split()
    if len(words_a) != len(words_b):
        return a.replace(" ", "") == b.replace(" ", "")
    diff = [(x, y) for x, y in zip(words_a, words_b, strict=True) if x != y]
    return len(diff) == 1 and min(map(len, diff[0])) >= 5 and _edits(*diff[0]) == 1


def _same_title(a: str, b: str, *, typo: bool) -> bool:
    (main_a, sub_a), (main_b, sub_b) = _parts(a), _parts(b)
    if not main_a or (main_a != main_b and not (typo and _near(main_a, main_b))):
        return False
    if derivative_marker(b, a) or derivative_marker(a, b):
        return False
    vol_a, vol_b = _volumes(a), _volumes(b)
    return not (vol_a and vol_b and vol_a != vol_b) and not _subtitles_differ(sub_a, sub_b)


def title_matches(wanted: str, found: str) -> bool:
    """Whether ``found`` is the title ``wanted`` names: equal main titles (a subtitle or a
    bracketed note on one side only is fine), no derivative marker on one side only, no
    differing volume numbers, no clearly different subtitles. No typo tolerance: the
    generators' variants (case, ":" -> " -", dropped "The", added ": A Novel") need none."""
    return _same_title(wanted, found, typo=False)


def title_rank(wanted: str, found: str) -> int:
    """0: same full title, or the found title is its bare main title; 1: the found title
    adds a subtitle or a note; 2: not a match at all."""
    if not title_matches(wanted, found):
        return 2
    full_found = _drop_article(normalise(found))
    if _drop_article(normalise(wanted)) == full_found or full_found == main_title(found):
        return 0
    return 1


def _name_tokens(name: str) -> list[str]:
    """A person's name as normalised tokens in "given ... surname" order."""
    name = _BY.sub("", _NOTE.sub(" ", unicodedata.normalize("NFKC", name)))
    parts = [p for p in name.split(",") if _bare(p) and not _bare(p).isdigit()]  # no dates
    parts = [p for p in parts if _bare(p) not in _SUFFIXES | _ROLES] or parts
    name = f"{parts[1]} {parts[0]}" if len(parts) >= 2 else " ".join(parts)  # "Last, First"
    if not name.isupper():  # "JK Rowling" -> "J K Rowling", but not "JO NESBO" nor "III"
        name = _INITIALS.sub(lambda m: m[1] if m[1].lower() in _SUFFIXES else " ".join(m[1]), name)
    tokens = normalise(name).split()
    while len(tokens) > 1 and tokens[0] in _HONORIFICS:
        tokens = tokens[1:]
    while len(tokens) > 1 and tokens[-1] in _SUFFIXES:
        tokens = tokens[:-1]
    return tokens


def _bare(text: str) -> str:
    return normalise(text).replace(" ", "")


def _split_name(name: str) -> tuple[list[str], list[str]]:
    """(given names, surname tokens); particles after a given name join the surname."""
    tokens = _name_tokens(name)
    i = len(tokens) - 1
    while i >= 2 and tokens[i - 1] in _PARTICLES:
        i -= 1
    return tokens[:i], tokens[i:]


def surname(name: str) -> str:
    """The normalised surname: "Le Guin, Ursula K." -> "le guin", "T. Morrison" -> "morrison"."""
    return " ".join(_split_name(name)[1])


def _surnames_match(a: list[str], b: list[str]) -> bool:
    """Equal surnames ("Le Guin" = "LeGuin"), or two adjacent letters swapped in one of 4+
    letters (the emulator's "Ishgiuro", "Kign"), or any one edit in one of 7+ letters
    ("Tolstoi", "MacCarthy"); not "Tyler"/"Taylor", which are two people."""
    if not a or not b or a[-1] == b[-1] or "".join(a) == "".join(b):
        return bool(a and b)
    x, y = a[-1], b[-1]
    if _edits(x, y) != 1:
        return False
    return min(len(x), len(y)) >= 7 or (len(x) == len(y) >= 4 and sorted(x) == sorted(y))


def _given_compatible(a: list[str], b: list[str]) -> bool:
    if not a or not b:
        return True
    x, y = a[0], b[0]
    return x == y or (len(x) == 1 and y.startswith(x)) or (len(y) == 1 and x.startswith(y))


def _same_person(a: str, b: str) -> bool:
    joined = "".join(_name_tokens(a))
    if joined and joined == "".join(_name_tokens(b)):  # also when a typo moved a space
        return True
    (given_a, sur_a), (given_b, sur_b) = _split_name(a), _split_name(b)
    return _surnames_match(sur_a, sur_b) and _given_compatible(given_a, given_b)


def _people(names: Sequence[str]) -> list[str]:
    return [p for n in names for p in _AUTHOR_LIST.split(n or "") if normalise(p)]


def author_matches(wanted: Sequence[str], found: Sequence[str]) -> bool:
    """Whether the first wanted author is one of ``found`` (True when nothing is wanted)."""
    people = _people(wanted)
    return not people or any(_same_person(people[0], other) for other in _people(found))


def year_of(text: object) -> int | None:
    """The first year 1000-2999 in a date text: "2023-05-12" -> 2023."""
    match = _YEAR.search(str(text)) if text is not None else None
    return int(match.group(1)) if match else None


def month_of(text: object) -> tuple[int, int] | None:
    """(year, month) when the date text names a month ("2023-05", "May 12, 2023",
    "12 May 2023"); None for a bare year or no date."""
    value = str(text) if text is not None else ""
    if (iso := _ISO_MONTH.search(value)) and 1 <= int(iso.group(2)) <= 12:
        return int(iso.group(1)), int(iso.group(2))
    names = (i for w in re.findall(r"[a-z]{3,}", value.lower()) for i, m in enumerate(_MONTHS, 1)
             if m.startswith(w))  # fmt: skip
    year, month = year_of(value), next(names, None)  # "May", "Sept.", "december"
    return (year, month) if year and month else None


def year_matches(
    found_year: int | None,
    candidate_year: int | None,
    month_year: int,
    *,
    year_unknown_ok: bool = False,
) -> bool:
    """Whether ``found_year`` is within one year of the candidate's year or of the month's
    year. An unknown found year proves nothing: False unless ``year_unknown_ok``."""
    if found_year is None:
        return year_unknown_ok
    return any(abs(found_year - y) <= 1 for y in (candidate_year, month_year) if y is not None)


def same_book(
    a_title: str, a_authors: Sequence[str], b_title: str, b_authors: Sequence[str]
) -> bool:
    """Whether two generated entries name one book: equal main titles (one typo allowed in
    20+ characters), no derivative marker or volume difference, compatible first authors
    (or no authors on one side). A translated title is another entry: we cannot know."""
    return _same_title(a_title, b_title, typo=True) and (
        author_matches(a_authors, b_authors) or author_matches(b_authors, a_authors)
    )
