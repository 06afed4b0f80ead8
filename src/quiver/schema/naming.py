"""Naming rules shared by reflection and authoring: table/column names to GraphQL names."""

from __future__ import annotations

import re

__all__ = ["camel", "pascal", "pluralize", "singularize"]

_IRREGULAR_PLURALS = {"person": "people", "child": "children", "man": "men", "woman": "women"}
_IRREGULAR_SINGULARS = {v: k for k, v in _IRREGULAR_PLURALS.items()}
_WORD = re.compile(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+|\d+")


def _words(name: str) -> list[str]:
    return [w.lower() for part in re.split(r"[^0-9A-Za-z]+", name) for w in _WORD.findall(part)]


def pascal(name: str) -> str:
    """``invoice_line`` / ``InvoiceLine`` / ``invoice-line`` -> ``InvoiceLine``."""
    return "".join(w[:1].upper() + w[1:] for w in _words(name)) or name


def camel(name: str) -> str:
    """``artist_id`` / ``ArtistId`` -> ``artistId``."""
    p = pascal(name)
    return p[:1].lower() + p[1:]


def pluralize(word: str) -> str:
    """English plural of the last word of a camel/Pascal-case name: ``album`` -> ``albums``."""
    head, last = _split_last(word)
    low = last.lower()
    if low in _IRREGULAR_PLURALS:
        plural = _IRREGULAR_PLURALS[low]
    elif low.endswith(("s", "x", "z", "ch", "sh")):
        plural = low + "es"
    elif low.endswith("y") and low[-2:-1] not in ("a", "e", "i", "o", "u"):
        plural = low[:-1] + "ies"
    else:
        plural = low + "s"
    return head + (plural[:1].upper() + plural[1:] if last[:1].isupper() else plural)


def singularize(word: str) -> str:
    """English singular of the last word: ``tracks`` -> ``track``."""
    head, last = _split_last(word)
    low = last.lower()
    if low in _IRREGULAR_SINGULARS:
        single = _IRREGULAR_SINGULARS[low]
    elif low.endswith("ies") and len(low) > 3:
        single = low[:-3] + "y"
    elif low.endswith(("sses", "xes", "zes", "ches", "shes")):
        single = low[:-2]
    elif low.endswith("s") and not low.endswith(("ss", "us", "is")):
        single = low[:-1]
    else:
        single = low
    return head + (single[:1].upper() + single[1:] if last[:1].isupper() else single)


def _split_last(word: str) -> tuple[str, str]:
    m = re.search(r"([A-Z]?[a-z0-9]+|[A-Z]+)$", word)
    if not m:
        return "", word
    return word[: m.start()], m.group(0)
