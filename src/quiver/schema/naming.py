"""Naming rules shared by reflection and authoring: table/column names to GraphQL names.

Names are built from the words of a database identifier. Letters outside ASCII are
transliterated first (``ünïcödé`` -> ``unicode``, ``Straße`` -> ``Strasse``); characters with no
ASCII form (``日本``) separate words like spaces do. A result that would start with a digit gets a
leading underscore (``2024_sales`` -> ``_2024Sales``), since GraphQL names may not.

Singular and plural forms come from the ``inflection`` library (the Rails inflector's rules:
``movies`` -> ``movie``, ``statuses`` -> ``status``, ``series`` and ``news`` stay as they are),
applied to the last word of a name, except for the nouns those rules get wrong (``campus``,
``canvas``, ``cookies``, ``heroes``, ...), which a table of their own spells.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence

import inflection

__all__ = ["ascii_fold", "camel", "enum_value_names", "pascal", "pluralize", "singularize"]

_WORD = re.compile(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+|\d+")


# Latin letters that Unicode does not decompose into an ASCII letter plus accents.
_LATIN_LETTERS = str.maketrans(
    {
        "ß": "ss",
        "ẞ": "Ss",
        "æ": "ae",
        "Æ": "Ae",
        "œ": "oe",
        "Œ": "Oe",
        "ø": "o",
        "Ø": "O",
        "ł": "l",
        "Ł": "L",
        "đ": "d",
        "Đ": "D",
        "ð": "d",
        "Ð": "D",
        "þ": "th",
        "Þ": "Th",
        "ħ": "h",
        "Ħ": "H",
        "ı": "i",
    }
)


def ascii_fold(name: str) -> str:
    """Transliterate letters to ASCII where Unicode allows: ``ünïcödé`` -> ``unicode``.

    Compatibility decomposition (NFKD) splits accented letters into a base letter and combining
    marks, which are dropped, and turns compatibility forms into plain ones (``ﬁ`` -> ``fi``,
    full-width ``Ａ`` -> ``A``); a few Latin letters without a decomposition are spelled out
    (``ß`` -> ``ss``, ``æ`` -> ``ae``, ``ø`` -> ``o``). Everything else, CJK for instance, is
    left as it is.
    """
    if name.isascii():
        return name
    decomposed = unicodedata.normalize("NFKD", name.translate(_LATIN_LETTERS))
    return "".join(c for c in decomposed if not unicodedata.combining(c))


def _words(name: str) -> list[str]:
    return [
        w.lower()
        for part in re.split(r"[^0-9A-Za-z]+", ascii_fold(name))
        for w in _WORD.findall(part)
    ]


def pascal(name: str) -> str:
    """``invoice_line`` / ``InvoiceLine`` / ``invoice-line`` -> ``InvoiceLine``.

    ``1st table`` -> ``_1StTable`` (a GraphQL name may not start with a digit). A name with no
    letters or digits to build from (``名前``) is returned unchanged.
    """
    p = "".join(w[:1].upper() + w[1:] for w in _words(name))
    if not p:
        return name
    return "_" + p if p[0].isdigit() else p


def camel(name: str) -> str:
    """``artist_id`` / ``ArtistId`` -> ``artistId``; ``2fa`` -> ``_2Fa``."""
    p = pascal(name)
    return p[:1].lower() + p[1:]


# Nouns the Rails rules get wrong, singular -> plural: singulars ending in s that they cut
# (campus -> campu, canvas -> canva, lens -> len), plurals of -ie words they end in -y
# (cookies -> cooky) and plurals they misspell (hero -> heros, safe -> saves, virus -> viri).
_IRREGULAR = {
    **{w: w + "es" for w in ("campus", "bonus", "census", "virus", "prospectus", "apparatus")},
    **{w: w + "es" for w in ("nexus", "plus", "chorus", "circus", "surplus", "walrus")},
    **{w: w + "es" for w in ("octopus", "gas", "canvas", "atlas", "lens", "bias", "iris")},
    **{w: w + "es" for w in ("hero", "echo", "veto", "potato", "tomato")},
    **{w: w + "s" for w in ("cookie", "calorie", "rookie", "selfie", "hoodie", "smoothie")},
    **{w: w + "s" for w in ("brownie", "genie", "prairie", "goalie", "sortie", "newbie")},
    **{w: w + "s" for w in ("safe", "cafe", "chief", "roof", "proof")},
    "cactus": "cacti",
    "corpus": "corpora",
    "genus": "genera",
    "focus": "foci",
    "radius": "radii",
    "stimulus": "stimuli",
    "alumnus": "alumni",
    "fungus": "fungi",
    "nucleus": "nuclei",
    "syllabus": "syllabi",
    "thesaurus": "thesauri",
    "terminus": "termini",
    "criterion": "criteria",
    "phenomenon": "phenomena",
    "appendix": "appendices",
    "thief": "thieves",
    "goose": "geese",
    "tooth": "teeth",
    "foot": "feet",
    "sms": "sms",
    "audio": "audio",
    "quiz": "quizzes",
    "by": "bys",  # order_by: a preposition, not a noun ending in y
    # singulars ending in -che, whose plurals the rules cut after ch (caches -> cach)
    **{w: w + "s" for w in ("cache", "niche", "quiche", "cliche", "avalanche", "ache")},
    **{w: w + "s" for w in ("headache", "moustache", "mustache", "psyche", "creche")},
    **{w: w + "s" for w in ("attache", "microfiche", "fiche", "cloche", "pastiche", "brioche")},
    # -ie nouns the rules end in -y (birdies -> birdy)
    **{w: w + "s" for w in ("birdie", "auntie", "freebie", "budgie", "collie", "boogie")},
    **{w: w + "s" for w in ("tie", "lie", "pie", "die", "magpie", "necktie", "bowtie")},
}
_SINGULAR = {plural: single for single, plural in _IRREGULAR.items()} | {
    single: single for single in _IRREGULAR
}
_PLURAL = _IRREGULAR | {plural: plural for plural in _IRREGULAR.values()}

# The nouns whose plural ends in -ves for a singular in -f or -fe. The rules turn every other
# -ves into -fe or -f as well (olives -> olife, caves -> cafe, gloves -> glofe, leaves ->
# leafe): a plural in -ves not listed here drops its s. Compounds end with one of them
# (bookshelves, housewives, werewolves); ``lives`` only counts whole (olives).
_VES = {
    "leaves": "leaf",
    "loaves": "loaf",
    "hooves": "hoof",
    "sheaves": "sheaf",
    "wolves": "wolf",
    "halves": "half",
    "shelves": "shelf",
    "calves": "calf",
    "scarves": "scarf",
    "wharves": "wharf",
    "dwarves": "dwarf",
    "elves": "elf",
    "selves": "self",
    "knives": "knife",
    "wives": "wife",
    "thieves": "thief",
    "lives": "life",
}
_VES_PLURAL = {single: plural for plural, single in _VES.items()}
# Endings whose plural adds -es and whose -es the rules leave on (buzzes -> buzze).
_ES_ENDINGS = ("zz", "tz")


def _ves_singular(low: str) -> str | None:
    """The singular of a plural ending in -ves (see ``_VES``), or None for other words."""
    if not low.endswith("ves"):
        return None
    for plural, single in _VES.items():
        if low == plural or (plural != "lives" and low.endswith(plural)):
            return low[: len(low) - len(plural)] + single
    return low[:-1]


def _singular(low: str) -> str:
    found = _SINGULAR.get(low) or _ves_singular(low)
    if found is not None:
        return found
    if low.endswith("es") and low[:-2].endswith(_ES_ENDINGS):
        return low[:-2]
    return str(inflection.singularize(low))


def _plural(low: str) -> str:
    found = _PLURAL.get(low)
    if found is not None:
        return found
    for single, plural in _VES_PLURAL.items():
        if low == single or (single != "life" and low.endswith(single) and len(single) > 3):
            return low[: len(low) - len(single)] + plural
    if low.endswith(_ES_ENDINGS):
        return low + "es"
    return str(inflection.pluralize(low))


def pluralize(word: str) -> str:
    """English plural of the last word of a camel/Pascal/snake-case name: ``album`` ->
    ``albums``, ``mediaType`` -> ``mediaTypes``, ``status`` -> ``statuses``."""
    head, last = _split_last(word)
    low = last.lower()
    return head + _same_case(_plural(low), last)


def singularize(word: str) -> str:
    """English singular of the last word: ``tracks`` -> ``track``, ``movies`` -> ``movie``,
    ``series`` -> ``series``, ``campus`` -> ``campus``."""
    head, last = _split_last(word)
    low = last.lower()
    # A word that is only an s (a table ``s``, ``item_s``) has no singular: it stays.
    return head + _same_case(_singular(low) or low, last)


def _same_case(new: str, old: str) -> str:
    """``new`` with ``old``'s capital first letter (``Movies`` -> ``Movie``) or all capitals."""
    if len(old) > 1 and old.isupper():
        return new.upper()
    return new[:1].upper() + new[1:] if old[:1].isupper() else new


def _split_last(word: str) -> tuple[str, str]:
    m = re.search(r"([A-Z]?[a-z0-9]+|[A-Z]+)$", word)
    if not m:
        return "", word
    return word[: m.start()], m.group(0)


_ENUM_NAME = re.compile(r"[_A-Za-z][_0-9A-Za-z]*")
_NOT_NAME = re.compile(r"[^_0-9A-Za-z]+")


def enum_value_names(values: Sequence[str]) -> dict[str, str]:
    """The GraphQL name of each database enum value.

    A value that is already a GraphQL name (other than ``true``, ``false``, ``null``, and
    names beginning with ``__``, which GraphQL reserves for introspection) keeps it; in
    others every run of characters a name cannot hold becomes ``_``, a leading digit gets
    ``_`` before it, leading underscores become one (``__x`` -> ``_x``) and
    ``true``/``false``/``null`` get ``_`` after; a name taken by an earlier value is
    numbered (``in_progress_2``).
    """
    out: dict[str, str] = {}
    used: set[str] = set()
    valid = [
        v
        for v in values
        if _ENUM_NAME.fullmatch(v) and v not in ("true", "false", "null") and not v.startswith("__")
    ]
    used.update(valid)
    for v in values:
        if v in used and v in valid:
            out[v] = v
            continue
        name = _NOT_NAME.sub("_", v) or "_"
        if not _ENUM_NAME.fullmatch(name):
            name = "_" + name
        if name.startswith("__"):
            name = "_" + name.lstrip("_")
        if name in ("true", "false", "null"):
            name += "_"
        base, n = name, 2
        while name in used:
            name = f"{base}_{n}" if base != "_" else f"_{n}"  # never __2, which is reserved
            n += 1
        used.add(name)
        out[v] = name
    return out
