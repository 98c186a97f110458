"""Writing variables: an environment's shared ones and a placement's own."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction

from ..models import Environment, Placement, PlacementVariable, Variable
from .audit import audit
from .common import require_admin


@transaction.atomic
def variable_set(
    *,
    user: Any,
    environment: Environment | Placement,
    name: str,
    value: str,
    is_secret: bool,
    source_ip: str | None = None,
) -> Variable | PlacementVariable:
    """Create or replace a variable of an environment (shared by its applications) or
    of a placement (that application's own, overriding the environment's). A secret is
    write-only: a blank value for an existing secret keeps the stored one, and a secret
    turns plain only with a new value (otherwise the page would show it). Audit details
    never carry the value."""
    require_admin(user)
    model, owner = _variable_model(environment)
    variable = model.objects.select_for_update().filter(**owner, name=name).first()
    created = variable is None
    if created:
        variable = model(**owner, name=name)
    keep = not value and not created and variable.is_secret
    if keep and not is_secret:
        raise ValidationError({"value": "Give a new value to turn a secret into a plain variable."})
    if is_secret and not value and not keep:
        raise ValidationError({"value": "A secret needs a value."})
    value_changed = not keep and (created or value != variable.value)
    current = variable.value if keep else value
    variable.is_secret = is_secret
    variable.set_value(current)
    variable.full_clean(exclude=list(owner))  # the name's rule is VariableValue.clean()
    variable.save()
    audit(
        user,
        "variable.set",
        environment,
        source_ip=source_ip,
        object_repr=f"{environment}: {name}",
        variable=name,
        is_secret=is_secret,
        created=created,
        value_changed=value_changed,
    )
    return variable


def _variable_model(owner: Environment | Placement) -> tuple[Any, dict[str, Any]]:
    if isinstance(owner, Placement):
        return PlacementVariable, {"placement": owner}
    return Variable, {"environment": owner}


@transaction.atomic
def variable_delete(
    *, user: Any, variable: Variable | PlacementVariable, source_ip: str | None = None
) -> None:
    require_admin(user)
    owner = variable.placement if isinstance(variable, PlacementVariable) else variable.environment
    audit(
        user,
        "variable.delete",
        owner,
        source_ip=source_ip,
        object_repr=f"{owner}: {variable.name}",
        variable=variable.name,
        is_secret=variable.is_secret,
    )
    variable.delete()
