"""Readable descriptions of config models, for ``quiver plugins describe`` and the reference."""

from __future__ import annotations

import builtins
import types
from dataclasses import dataclass
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

__all__ = ["FieldDoc", "describe_fields", "type_name"]


@dataclass(frozen=True)
class FieldDoc:
    name: str
    type: str
    default: str
    required: bool
    description: str
    nested: builtins.type[BaseModel] | None = None


def type_name(tp: Any) -> str:
    """A YAML-minded name of a type annotation: ``int``, ``list[str]``, ``a | b``."""
    origin = get_origin(tp)
    if origin is Annotated:  # a checked type (a tenant id ...): named as what it annotates
        return type_name(get_args(tp)[0])
    if origin is Literal:
        return " | ".join(repr(a) if not isinstance(a, str) else a for a in get_args(tp))
    if origin in (Union, types.UnionType):
        return " | ".join(type_name(a) for a in get_args(tp) if a is not type(None)) + (
            " | null" if type(None) in get_args(tp) else ""
        )
    if origin in (list, tuple, set):
        return f"list[{', '.join(type_name(a) for a in get_args(tp)[:1])}]"
    if origin is dict:
        key, value = get_args(tp) or (str, Any)
        return f"map[{type_name(key)}, {type_name(value)}]"
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return tp.__name__
    if tp is Any:
        return "any"
    return getattr(tp, "__name__", str(tp)).replace("NoneType", "null")


def _nested(tp: Any) -> type[BaseModel] | None:
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return tp
    for arg in get_args(tp):
        found = _nested(arg)
        if found is not None:
            return found
    return None


def describe_fields(model: type[BaseModel]) -> list[FieldDoc]:
    """One entry per key of ``model`` (aliases as written in YAML)."""
    docs = []
    for name, f in model.model_fields.items():
        required = f.is_required()
        if required:
            default = ""
        elif f.default_factory is not None:
            value = f.default_factory()  # type: ignore[call-arg]
            default = "{...}" if isinstance(value, BaseModel) else repr(value).replace("'", '"')
        elif f.default is PydanticUndefined or f.default is None:
            default = "null" if f.default is None else ""
        else:
            default = (
                repr(f.default).replace("'", '"')
                if not isinstance(f.default, bool)
                else (str(f.default).lower())
            )
        docs.append(
            FieldDoc(
                f.alias or name,
                type_name(f.annotation),
                default,
                required,
                f.description or "",
                _nested(f.annotation),
            )
        )
    return docs
