"""Validation rules that bound what one GraphQL document may ask for.

``validation_rules(settings)`` returns graphql-core rule classes, applied with the specified
rules when a document is prepared (so each distinct document is checked once):

* depth: the deepest field nesting, following fragment spreads (cycles are cut);
* aliases: how many aliases the document uses;
* cost: each field counts 1; the selections under a list field count once per row, and the
  rows are the field's ``limit`` / ``first`` / ``last`` argument; without one, the list's
  expected length from the database's statistics (``list_sizes``: a root list's table rows, a
  relation's children per parent row), capped by ``graphql.default_list_limit``; without
  statistics, ``graphql.default_list_limit`` or 100; the sum saturates at :data:`MAX_REPORTED_COST`
  (2**53 - 1, the largest integer every JSON reader carries exactly), so a document that asks
  for more (a huge ``first``, fifty nested lists, a chain of fragments) reports "at least" that;
* introspection: ``__schema`` and ``__type`` are refused when ``graphql.introspection`` is
  false (``__typename`` is always allowed).

``specified_rules_bounded()`` are graphql-core's specified rules with the check that fields of
one response name can merge given :data:`MERGE_CHECK_BUDGET` units of work per document, a
tenth of graphql-core's own: a document that needs more (hundreds of fields of one name with
different arguments) is refused ("Validation aborted.") in a fraction of a second of the event
loop, instead of the seconds the full budget took.

Introspection fields are not counted for depth and cost: the introspection setting governs them.
Each error says the limit, what the document reached and which setting raises the limit, with
``extensions.code``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from graphql import (
    ASTValidationRule,
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    GraphQLField,
    GraphQLNamedType,
    GraphQLObjectType,
    GraphQLSchema,
    InlineFragmentNode,
    IntValueNode,
    OperationDefinitionNode,
    OperationType,
    OverlappingFieldsCanBeMergedRule,
    SelectionSetNode,
    ValidationContext,
    VariableNode,
    get_named_type,
    get_nullable_type,
    is_list_type,
    specified_rules,
)
from quiver.config.settings import GraphQLSettings

__all__ = [
    "DEFAULT_LIST_SIZE",
    "MAX_REPORTED_COST",
    "MERGE_CHECK_BUDGET",
    "ListSizes",
    "cost_message",
    "operation_cost",
    "row_counts_from_variables",
    "specified_rules_bounded",
    "validation_rules",
]

#: Rows assumed for a list field without a ``limit``/``first`` and without a configured default.
DEFAULT_LIST_SIZE = 100
#: Where cost arithmetic stops: the largest integer JSON readers carry exactly.
MAX_REPORTED_COST = 2**53 - 1
#: The work (comparisons of fields, of their arguments, of fragments) the check that fields of
#: one response name can merge may do for one document. graphql-core's 500,000 took over a
#: second of the event loop for one document of 15,000 tokens (ten times that in a batch);
#: queries that clients send spend a few hundred at most (the introspection query none).
MERGE_CHECK_BUDGET = 50_000
_ROW_ARGS = ("limit", "first", "last")
_INTROSPECTION = frozenset({"__schema", "__type"})


#: (parent type name, field name) -> expected rows of a list field that gives no row count.
ListSizes = Mapping[tuple[str, str], int]


class _BoundedMergeCheckRule(OverlappingFieldsCanBeMergedRule):
    """graphql-core's field-merging check with :data:`MERGE_CHECK_BUDGET` units of work."""

    def __init__(self, context: ValidationContext) -> None:
        super().__init__(context)
        self.rule_context.remaining_complexity_budget = MERGE_CHECK_BUDGET


def specified_rules_bounded() -> list[type[ASTValidationRule]]:
    """graphql-core's specified rules, the field-merging check bounded (see the module docs)."""
    return [
        _BoundedMergeCheckRule if rule is OverlappingFieldsCanBeMergedRule else rule
        for rule in specified_rules
    ]


def validation_rules(
    settings: GraphQLSettings, list_sizes: ListSizes | None = None
) -> list[type[ASTValidationRule]]:
    """The rule classes enforcing ``settings``' depth, alias, cost and introspection limits;
    ``list_sizes`` are the expected lengths of lists that give no row count."""
    sizes = list_sizes or {}
    rules: list[type[ASTValidationRule]] = [
        _rule("MaxDepthRule", _check_depth, settings, sizes),
        _rule("MaxAliasesRule", _check_aliases, settings, sizes),
        _rule("MaxCostRule", _check_cost, settings, sizes),
    ]
    if not settings.introspection:
        rules.append(_rule("NoIntrospectionRule", _check_introspection, settings, sizes))
    return rules


def _rule(
    name: str, check: Any, settings: GraphQLSettings, sizes: ListSizes
) -> type[ASTValidationRule]:
    def enter_document(self: ASTValidationRule, node: DocumentNode, *_args: Any) -> Any:
        context = self.context
        assert isinstance(context, ValidationContext)
        for error in check(_Walk(context.schema, node, settings, sizes)):
            self.report_error(error)
        return self.BREAK

    return type(name, (ASTValidationRule,), {"enter_document": enter_document})


def _error(message: str, nodes: Any, code: str, **extensions: Any) -> GraphQLError:
    return GraphQLError(message, nodes, extensions={"code": code, **extensions})


class _Walk:
    """The document's operations and fragments, with the schema to type their fields."""

    def __init__(
        self,
        schema: GraphQLSchema,
        document: DocumentNode,
        s: GraphQLSettings,
        sizes: ListSizes | None = None,
    ) -> None:
        self.schema = schema
        self.document = document
        self.settings = s
        self.sizes = sizes or {}
        self.fragments = {
            d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)
        }
        self.operations = [
            d for d in document.definitions if isinstance(d, OperationDefinitionNode)
        ]

    def root_type(self, op: OperationDefinitionNode) -> GraphQLObjectType | None:
        if op.operation == OperationType.QUERY:
            return self.schema.query_type
        if op.operation == OperationType.MUTATION:
            return self.schema.mutation_type
        return self.schema.subscription_type

    def items(
        self, selection_set: SelectionSetNode | None, parent: GraphQLNamedType | None
    ) -> Iterator[tuple[FieldNode, GraphQLField | None] | FragmentDefinitionNode]:
        """The fields of a selection set (inline fragments expanded) and its named fragments."""
        if selection_set is None:
            return
        for sel in selection_set.selections:
            if isinstance(sel, FieldNode):
                fields = getattr(parent, "fields", None)
                yield sel, (fields.get(sel.name.value) if fields is not None else None)
            elif isinstance(sel, InlineFragmentNode):
                cond = parent
                if sel.type_condition is not None:
                    cond = self.schema.get_type(sel.type_condition.name.value) or parent
                yield from self.items(sel.selection_set, cond)
            elif isinstance(sel, FragmentSpreadNode):
                frag = self.fragments.get(sel.name.value)
                if frag is not None:
                    yield frag

    def fragment_type(self, frag: FragmentDefinitionNode) -> GraphQLNamedType | None:
        return self.schema.get_type(frag.type_condition.name.value)


def _op_name(op: OperationDefinitionNode) -> str:
    return f"operation '{op.name.value}'" if op.name else "the operation"


# ----- depth -----
def _check_depth(w: _Walk) -> Iterator[GraphQLError]:
    limit = w.settings.max_depth
    for op in w.operations:
        depth, deepest = _depth(w, op.selection_set, w.root_type(op), frozenset(), {})
        if depth > limit:
            yield _error(
                f"The query is nested {depth} levels deep; the limit is {limit}. "
                "Ask for fewer nested levels, or raise graphql.max_depth.",
                deepest or op,
                "DEPTH_LIMIT_EXCEEDED",
                limit=limit,
                depth=depth,
            )


def _depth(
    w: _Walk,
    selection_set: SelectionSetNode | None,
    parent: GraphQLNamedType | None,
    seen: frozenset[str],
    memo: dict[str, tuple[int, FieldNode | None]],
) -> tuple[int, FieldNode | None]:
    """Levels below (and including) this selection set, and the deepest field."""
    best, where = 0, None
    for item in w.items(selection_set, parent):
        if isinstance(item, FragmentDefinitionNode):
            name = item.name.value
            if name in seen:
                continue  # a cycle; NoFragmentCycles reports it
            if name not in memo:
                memo[name] = _depth(
                    w, item.selection_set, w.fragment_type(item) or parent, seen | {name}, memo
                )
            d, deeper = memo[name]
        else:
            node, fdef = item
            if node.name.value in _INTROSPECTION:
                continue
            d, deeper = 1, node
            if node.selection_set is not None:
                child_type = get_named_type(fdef.type) if fdef else None
                sub, sub_where = _depth(w, node.selection_set, child_type, seen, memo)
                if sub:
                    d, deeper = sub + 1, sub_where
        if d > best:
            best, where = d, deeper
    return best, where


# ----- aliases -----
def _check_aliases(w: _Walk) -> Iterator[GraphQLError]:
    limit = w.settings.max_aliases
    aliased: list[FieldNode] = []

    def collect(selection_set: SelectionSetNode | None) -> None:
        if selection_set is None:
            return
        for sel in selection_set.selections:
            if isinstance(sel, FieldNode) and sel.alias is not None:
                aliased.append(sel)
            sub = getattr(sel, "selection_set", None)
            if isinstance(sub, SelectionSetNode):
                collect(sub)

    for definition in w.document.definitions:
        if isinstance(definition, OperationDefinitionNode | FragmentDefinitionNode):
            collect(definition.selection_set)
    if len(aliased) > limit:
        yield _error(
            f"The document uses {len(aliased)} aliases; the limit is {limit}. "
            "Use fewer aliases, or raise graphql.max_aliases.",
            aliased[limit],
            "ALIAS_LIMIT_EXCEEDED",
            limit=limit,
            aliases=len(aliased),
        )


# ----- cost -----
def _check_cost(w: _Walk) -> Iterator[GraphQLError]:
    limit = w.settings.max_cost
    for op in w.operations:
        variables = {v.variable.name.value: v.default_value for v in op.variable_definitions or ()}
        cost = _cost(w, op.selection_set, w.root_type(op), frozenset(), variables, {})
        if cost > limit:
            yield _error(
                cost_message(cost, limit),
                op,
                "COST_LIMIT_EXCEEDED",
                limit=limit,
                cost=cost,
            )


def cost_message(cost: int, limit: int, *, with_variables: bool = False) -> str:
    """What a COST_LIMIT_EXCEEDED error says (a saturated cost is "at least" the cap)."""
    amount = f"at least {MAX_REPORTED_COST}" if cost >= MAX_REPORTED_COST else str(cost)
    these = " with these variables" if with_variables else ""
    return (
        f"The query's estimated cost{these} is {amount}; the limit is {limit}. "
        "Ask for fewer rows (limit/first) or fields, or raise graphql.max_cost."
    )


def _rows(
    w: _Walk,
    node: FieldNode,
    fdef: GraphQLField | None,
    parent: GraphQLNamedType | None,
    variables: dict[str, Any],
) -> int:
    """How many rows a field stands for: 1 for a single object, else its limit."""
    for arg in node.arguments or ():
        if arg.name.value not in _ROW_ARGS or fdef is None or arg.name.value not in fdef.args:
            continue  # an argument the field does not take bounds nothing (validation says so)
        value: Any = arg.value
        if isinstance(value, VariableNode):
            value = variables.get(value.name.value)
        if isinstance(value, IntValueNode):
            return min(max(int(value.value), 0), MAX_REPORTED_COST)
        if isinstance(value, int) and not isinstance(value, bool):  # a variable's run-time value
            return min(max(value, 0), MAX_REPORTED_COST)
        return w.settings.default_list_limit or DEFAULT_LIST_SIZE
    if parent is not None:
        expected = w.sizes.get((parent.name, node.name.value))
        if expected is not None:
            cap = w.settings.default_list_limit
            return min(expected, cap) if cap else expected
    if fdef is None or not is_list_type(get_nullable_type(fdef.type)):  # type: ignore[arg-type]
        return 1
    if parent is not None and parent.name.endswith("Connection"):
        return 1  # edges/nodes of a connection: its first/last already counted the rows
    return w.settings.default_list_limit or DEFAULT_LIST_SIZE


def _cost(
    w: _Walk,
    selection_set: SelectionSetNode | None,
    parent: GraphQLNamedType | None,
    seen: frozenset[str],
    variables: dict[str, Any],
    memo: dict[str, int],
) -> int:
    total = 0
    for item in w.items(selection_set, parent):
        if isinstance(item, FragmentDefinitionNode):
            name = item.name.value
            if name in seen:
                continue
            if name not in memo:
                memo[name] = _cost(
                    w,
                    item.selection_set,
                    w.fragment_type(item) or parent,
                    seen | {name},
                    variables,
                    memo,
                )
            total = min(total + memo[name], MAX_REPORTED_COST)
            continue
        node, fdef = item
        if node.name.value in _INTROSPECTION:
            continue
        total += 1
        if node.selection_set is not None:
            child_type = get_named_type(fdef.type) if fdef else None
            inner = _cost(w, node.selection_set, child_type, seen, variables, memo)
            total += _rows(w, node, fdef, parent, variables) * inner
        total = min(total, MAX_REPORTED_COST)  # saturate: never beyond what JSON carries
    return total


def row_counts_from_variables(document: DocumentNode) -> bool:
    """Whether a ``limit``/``first``/``last`` argument anywhere in ``document`` is a variable.

    Validation assumes a default row count for those; such documents are costed again with the
    variables' values when they run (:func:`operation_cost`).
    """

    def walk(selection_set: SelectionSetNode | None) -> bool:
        for sel in selection_set.selections if selection_set is not None else ():
            if isinstance(sel, FieldNode) and any(
                a.name.value in _ROW_ARGS and isinstance(a.value, VariableNode)
                for a in sel.arguments or ()
            ):
                return True
            if walk(getattr(sel, "selection_set", None)):
                return True
        return False

    return any(
        walk(d.selection_set)
        for d in document.definitions
        if isinstance(d, OperationDefinitionNode | FragmentDefinitionNode)
    )


def operation_cost(
    schema: GraphQLSchema,
    document: DocumentNode,
    operation: OperationDefinitionNode,
    settings: GraphQLSettings,
    variables: dict[str, Any],
    list_sizes: ListSizes | None = None,
) -> int:
    """The estimated cost of ``operation`` with the variables' run-time values."""
    w = _Walk(schema, document, settings, list_sizes)
    return _cost(w, operation.selection_set, w.root_type(operation), frozenset(), variables, {})


# ----- introspection -----
def _check_introspection(w: _Walk) -> Iterator[GraphQLError]:
    def find(selection_set: SelectionSetNode | None) -> Iterator[FieldNode]:
        if selection_set is None:
            return
        for sel in selection_set.selections:
            if isinstance(sel, FieldNode) and sel.name.value in _INTROSPECTION:
                yield sel
            sub = getattr(sel, "selection_set", None)
            if isinstance(sub, SelectionSetNode):
                yield from find(sub)

    for definition in w.document.definitions:
        if isinstance(definition, OperationDefinitionNode | FragmentDefinitionNode):
            for node in find(definition.selection_set):
                yield _error(
                    f"Introspection ({node.name.value}) is disabled on this server. "
                    "Set graphql.introspection to true to allow it.",
                    node,
                    "INTROSPECTION_DISABLED",
                )
