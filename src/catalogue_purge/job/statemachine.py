"""A local interpreter of the purge-run state machine's definition, so that the local run
takes exactly the deployed path: the same states, payloads, choices and maps.

It covers what statemachine/purge-run.asl.json uses (JSONPath Parameters, ResultSelector and
ResultPath, the StringToJson intrinsic, Choice on a boolean, Distributed Map with an S3 JSON
item list, Fail and Succeed) and refuses anything else, so the definition cannot drift beyond
what the local run can follow.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from catalogue_purge.errors import PurgeError

Invoke = Callable[[str, dict], dict]
# (function, payloads, max concurrency) -> one result per payload, or the exception it raised
InvokeMany = Callable[[str, Sequence[dict], int], list[dict | BaseException]]
ReadItems = Callable[[str, str], list]
BeforeState = Callable[[str, dict], None]

_STRING_TO_JSON = re.compile(r"^States\.StringToJson\('(.*)'\)$")
_SUPPORTED = {
    "Task": {
        "Type",
        "Comment",
        "Resource",
        "Parameters",
        "ResultSelector",
        "ResultPath",
        "Retry",
        "Next",
        "End",
    },
    "Pass": {"Type", "Comment", "Parameters", "ResultPath", "Next", "End"},
    "Choice": {"Type", "Comment", "Choices", "Default"},
    "Fail": {"Type", "Comment", "Error", "Cause", "CausePath"},
    "Succeed": {"Type", "Comment"},
    "Map": {
        "Type",
        "Comment",
        "ItemReader",
        "ItemSelector",
        "ItemProcessor",
        "MaxConcurrencyPath",
        "ToleratedFailurePercentagePath",
        "ResultWriter",
        "ResultPath",
        "Next",
        "End",
    },
}


class ExecutionFailed(PurgeError):
    """The state machine ended in a Fail state, or a state failed."""

    exit_code = 9

    def __init__(self, error: str, cause: str):
        super().__init__(f"{error}: {cause}")
        self.error, self.cause = error, cause


@dataclass(frozen=True)
class Runtime:
    invoke: Invoke
    invoke_many: InvokeMany
    read_items: ReadItems
    before_state: BeforeState | None = None


def path_get(document: Any, path: str, context: dict | None = None) -> Any:
    """$.a.b of the state's input, $$.a.b of the context object."""
    if path.startswith("$$"):
        document, path = context or {}, path[1:]
    if path == "$":
        return document
    if not path.startswith("$."):
        raise PurgeError(f"unsupported JSONPath {path!r}")
    for part in path[2:].split("."):
        if not isinstance(document, dict) or part not in document:
            raise ExecutionFailed("States.Runtime", f"JSONPath {path!r} matches nothing")
        document = document[part]
    return document


def path_set(document: Any, path: str | None, value: Any) -> Any:
    if path is None:
        return document
    if path == "$":
        return value
    result = dict(document)
    parts = path.removeprefix("$.").split(".")
    target = result
    for part in parts[:-1]:
        target[part] = dict(target.get(part, {}))
        target = target[part]
    target[parts[-1]] = value
    return result


def parameters(template: Any, document: Any, context: dict | None = None) -> Any:
    """A Parameters (or ItemSelector, ResultSelector) template evaluated over a document."""
    if not isinstance(template, dict):
        return template
    out = {}
    for key, value in template.items():
        if key.endswith(".$"):
            intrinsic = _STRING_TO_JSON.match(value)
            out[key[:-2]] = (
                json.loads(intrinsic.group(1)) if intrinsic else path_get(document, value, context)
            )
        else:
            out[key] = parameters(value, document, context)
    return out


def _check(name: str, state: dict) -> None:
    kind = state.get("Type")
    if kind not in _SUPPORTED:
        raise PurgeError(f"state {name}: type {kind} is not supported by the local runner")
    extra = set(state) - _SUPPORTED[kind]
    if extra:
        raise PurgeError(f"state {name}: {', '.join(sorted(extra))} not supported locally")


def execute(definition: dict, execution_input: dict, runtime: Runtime) -> dict:
    """Run the definition from StartAt; the output of the last state."""
    states, name = definition["States"], definition["StartAt"]
    document = execution_input
    while True:
        state = states[name]
        _check(name, state)
        if runtime.before_state is not None:
            runtime.before_state(name, document)
        kind = state["Type"]
        if kind == "Succeed":
            return document
        if kind == "Fail":
            cause = (
                path_get(document, state["CausePath"])
                if "CausePath" in state
                else state.get("Cause", "")
            )
            raise ExecutionFailed(state.get("Error", "States.Failed"), str(cause))
        if kind == "Choice":
            name = _choose(state, document)
            continue
        if kind == "Pass":
            result = (
                parameters(state.get("Parameters"), document)
                if "Parameters" in state
                else (document)
            )
        elif kind == "Task":
            payload = (
                parameters(state["Parameters"], document) if "Parameters" in state else (document)
            )
            result = runtime.invoke(state["Resource"], payload)
            if "ResultSelector" in state:
                result = parameters(state["ResultSelector"], result)
        else:
            result = _map(name, state, document, runtime)
        document = path_set(document, state.get("ResultPath", "$"), result)
        if state.get("End"):
            return document
        name = state["Next"]


def _choose(state: dict, document: dict) -> str:
    for choice in state["Choices"]:
        if set(choice) != {"Variable", "BooleanEquals", "Next"}:
            raise PurgeError(f"choice {choice} is not supported by the local runner")
        if path_get(document, choice["Variable"]) is choice["BooleanEquals"]:
            return str(choice["Next"])
    return str(state["Default"])


def _map(name: str, state: dict, document: dict, runtime: Runtime) -> list:
    reader = parameters(state["ItemReader"]["Parameters"], document)
    items = runtime.read_items(reader["Bucket"], reader["Key"])
    processor = state["ItemProcessor"]
    inner = processor["States"][processor["StartAt"]]
    if len(processor["States"]) != 1 or inner["Type"] != "Task" or not inner.get("End"):
        raise PurgeError(f"map {name}: only a single Task per item is supported locally")
    payloads = [
        parameters(
            state["ItemSelector"], document, {"Map": {"Item": {"Value": item, "Index": index}}}
        )
        for index, item in enumerate(items)
    ]
    concurrency = int(path_get(document, state["MaxConcurrencyPath"]))
    results = runtime.invoke_many(inner["Resource"], payloads, concurrency)
    failed = [r for r in results if isinstance(r, BaseException)]
    tolerated = (
        float(path_get(document, state["ToleratedFailurePercentagePath"]))
        if "ToleratedFailurePercentagePath" in state
        else 0.0
    )
    if failed and len(failed) * 100 > tolerated * len(results):
        raise ExecutionFailed(
            "States.ExceedToleratedFailureThreshold",
            f"{name}: {len(failed)} of {len(results)} items failed; the first: {failed[0]}",
        ) from failed[0]
    return [r for r in results if not isinstance(r, BaseException)]
