"""The run form the Prefect UI draws from a deployment's parameter schema. For a parameter
``x: float | None = None`` Prefect writes ``anyOf [number, null]`` with ``default: null``, which
the form shows as a "float | None" switch set to None, reading 'Property is type "None"' under
every optional parameter. :func:`form_schema` makes each such parameter a plain field of its own
type with no default: left empty, it is left out of the run and the flow's default (None)
applies. Parameters whose None is a value of its own (``precision_bits``: lossless) keep it."""

from __future__ import annotations

import copy
from typing import Any


def form_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """``schema`` (a flow's parameter schema) with every "X or null, default null" parameter
    made a plain, empty field of type X."""
    out = copy.deepcopy(schema)
    for prop in out.get("properties", {}).values():
        options = prop.get("anyOf")
        if not options or "default" not in prop or prop["default"] is not None:
            continue
        kept = [o for o in options if o != {"type": "null"}]
        if len(kept) == 1 and len(kept) < len(options):
            del prop["anyOf"], prop["default"]
            prop.update(kept[0])
    return out


def tidy_deployed_forms(names: list[str]) -> None:
    """Rewrite the stored schema of the deployments ``names`` ("flow/deployment") with
    :func:`form_schema` (after ``prefect deploy``, which writes Prefect's own)."""
    from prefect import get_client
    from prefect.client.schemas.actions import DeploymentUpdate

    with get_client(sync_client=True) as client:
        for name in names:
            dep = client.read_deployment_by_name(name)
            tidy = form_schema(dep.parameter_openapi_schema or {})
            client.update_deployment(dep.id, DeploymentUpdate(parameter_openapi_schema=tidy))
