"""Which webhook the API server calls for a request, decided as the API server decides it.

Follows k8s.io/apiserver `admission/plugin/webhook`: a webhook is considered when
one of its rules matches the request (group, version, operation, resource and
subresource, scope) and its namespaceSelector matches the namespace's labels
(for a Namespace request, the object's own labels). Then its CEL matchConditions
run: any false skips the webhook, all true calls it, and an error (with none
false) applies failurePolicy, which for sidecred is Fail: the request is refused.

The CEL variables are built as `CreateAdmissionRequest` + `ToUnstructured` build
them: `request` is the AdmissionRequest the webhook would receive (omitempty
fields absent) with `uid` "" and null `object`/`oldObject`. A null `object` or
`oldObject` is left undeclared here, so any use of it is an error; in the API
server even `has(oldObject.x)` on a null oldObject is an error, while cel-python
would answer false. `&&` and `||` follow the CEL spec (false && error is false,
true || error is true, error otherwise). `has(e.f)` follows cel-go, not cel-python: an error in `e`
(`has(object.spec.volumes)` without `spec`) or an `e` that is not a map is an
error, where cel-python answers false. The Kubernetes string library's
`lowerAscii` is provided.
"""

from __future__ import annotations

import functools
from typing import Any

import celpy
import lark
from celpy import celtypes
from celpy.evaluation import CELEvalError, Evaluator

CALLED, SKIPPED, NOT_SENT, ERROR = "called", "skipped", "not-sent", "error"
NAMESPACES = {"group": "", "version": "v1", "resource": "namespaces"}
NAME_LABEL = "kubernetes.io/metadata.name"


def _lower_ascii(text: celtypes.StringType) -> celtypes.StringType:
    return celtypes.StringType("".join(c.lower() if c.isascii() else c for c in text))


def _logical(absorbing: bool) -> Any:
    """CEL's commutative `&&` (absorbing false) or `||` (absorbing true): the absorbing
    value wins over an error on either side; otherwise an error stays an error.
    (cel-python's own raises on two errors and then fails to print them.)"""

    def combine(left: Any, right: Any) -> Any:
        if any(isinstance(v, celtypes.BoolType) and bool(v) is absorbing for v in (left, right)):
            return celtypes.BoolType(absorbing)
        for value in (left, right):
            if not isinstance(value, celtypes.BoolType):
                return (
                    value
                    if isinstance(value, CELEvalError)
                    else CELEvalError(
                        f"no such overload for a logical operator on {type(value).__name__}"
                    )
                )
        return celtypes.BoolType(not absorbing)

    return combine


FUNCTIONS = {"lowerAscii": _lower_ascii, "_&&_": _logical(False), "_||_": _logical(True)}


class _GoHasEvaluator(Evaluator):
    """cel-go's `has(e.f)`: an error unless `e` evaluates to a map; then key presence."""

    def macro_has_eval(self, exprlist: lark.Tree) -> Any:
        node = exprlist
        while isinstance(node, lark.Tree) and node.data != "member_dot":
            (node,) = node.children
        inner, field = node.children
        value = self.visit(inner)
        if isinstance(value, CELEvalError):
            return value
        if not isinstance(value, celtypes.MapType):
            return CELEvalError(f"has() on {type(value).__name__}, not a map", TypeError, None)
        return celtypes.BoolType(celtypes.StringType(field) in value)


class _GoHasRunner(celpy.InterpretedRunner):
    def evaluate(self, context: Any) -> Any:
        evaluator = _GoHasEvaluator(ast=self.ast, activation=self.new_activation())
        return evaluator.evaluate(context)


@functools.cache
def _program(expression: str) -> celpy.Runner:
    env = celpy.Environment(runner_class=_GoHasRunner)
    return env.program(env.compile(expression), functions=FUNCTIONS)


def cel_request(request: dict[str, Any]) -> dict[str, Any]:
    """The `request` variable of matchConditions for the AdmissionRequest `request`."""
    return {**request, "uid": "", "object": None, "oldObject": None}


def evaluate(expression: str, request: dict[str, Any]) -> bool | str:
    """The condition's value, or the text of its evaluation error."""
    activation = {"request": celpy.json_to_cel(cel_request(request))}
    for name, key in (("object", "object"), ("oldObject", "oldObject")):
        if request.get(key) is not None:
            activation[name] = celpy.json_to_cel(request[key])
    try:
        result = _program(expression).evaluate(activation)
    except celpy.CELEvalError as exc:
        return f"error: {str(exc.args[0])[:160]}"
    if isinstance(result, celpy.CELEvalError):
        return f"error: {str(result.args[0])[:160]}"
    if not isinstance(result, celtypes.BoolType):
        return f"error: not a bool: {result!r}"
    return bool(result)


def _resource_matches(pattern: str, resource: str, sub_resource: str) -> bool:
    want_resource, _, want_sub = pattern.partition("/")
    if want_resource not in ("*", resource):
        return False
    if not want_sub:
        return not sub_resource
    return want_sub in ("*", sub_resource)


def rule_matches(rule: dict[str, Any], request: dict[str, Any]) -> bool:
    """A RuleWithOperations against the request (rules.go `Matcher`)."""
    gvr = request["resource"]
    is_namespace = gvr == NAMESPACES and "subResource" not in request
    scope = rule.get("scope", "*")
    scoped = {
        "*": True,
        "Namespaced": not is_namespace and bool(request.get("namespace")),
        "Cluster": is_namespace or not request.get("namespace"),
    }[scope]
    return (
        scoped
        and any(g in ("*", gvr["group"]) for g in rule["apiGroups"])
        and any(v in ("*", gvr["version"]) for v in rule["apiVersions"])
        and any(o in ("*", request["operation"]) for o in rule["operations"])
        and any(
            _resource_matches(p, gvr["resource"], request.get("subResource", ""))
            for p in rule["resources"]
        )
    )


def selector_matches(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """A LabelSelector (matchLabels and In/NotIn/Exists/DoesNotExist expressions)."""
    if any(labels.get(k) != v for k, v in (selector.get("matchLabels") or {}).items()):
        return False
    for expression in selector.get("matchExpressions") or []:
        key, operator = expression["key"], expression["operator"]
        values = expression.get("values") or []
        if not {
            "In": key in labels and labels[key] in values,
            "NotIn": key not in labels or labels[key] not in values,
            "Exists": key in labels,
            "DoesNotExist": key not in labels,
        }[operator]:
            return False
    return True


def namespace_labels(request: dict[str, Any], labels: dict[str, dict[str, str]]) -> dict[str, str]:
    """The labels the namespaceSelector sees: the Namespace object's own for a
    Namespace request, else those of the request's namespace (`labels` by name;
    every namespace carries the name label the API server sets)."""
    if request["resource"] == NAMESPACES and "subResource" not in request:
        obj = request.get("object") or request.get("oldObject") or {}
        own = dict((obj.get("metadata") or {}).get("labels") or {})
        return {NAME_LABEL: request.get("name", ""), **own}
    name = request.get("namespace", "")
    return {NAME_LABEL: name, **labels.get(name, {})}


def webhook_outcome(
    hook: dict[str, Any], request: dict[str, Any], labels: dict[str, dict[str, str]]
) -> str:
    """CALLED, SKIPPED (a condition is false), NOT_SENT (rules or selector) or an error."""
    if not any(rule_matches(rule, request) for rule in hook["rules"]):
        return NOT_SENT
    if request.get("namespace") and not selector_matches(
        hook.get("namespaceSelector") or {}, namespace_labels(request, labels)
    ):
        return NOT_SENT
    values = [evaluate(c["expression"], request) for c in hook.get("matchConditions") or []]
    if False in values:
        return SKIPPED
    errors = [v for v in values if isinstance(v, str)]
    return f"{ERROR}: {errors[0]}" if errors else CALLED


def configuration_outcome(
    config: dict[str, Any],
    request: dict[str, Any],
    labels: dict[str, dict[str, str]] | None = None,
) -> str:
    """One outcome for a webhook configuration: an error if any webhook errs, else
    CALLED if any is called, else SKIPPED if any was considered, else NOT_SENT."""
    outcomes = [webhook_outcome(hook, request, labels or {}) for hook in config["webhooks"]]
    for wanted in (ERROR, CALLED, SKIPPED):
        for outcome in outcomes:
            if outcome.startswith(wanted):
                return outcome
    return NOT_SENT
