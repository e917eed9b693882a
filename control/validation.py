"""Checks of API bodies against the partner catalog and the configuration: pure functions.

They use the worker's own models and catalog (OutputConfig, ConnectionConfig, resolve_output)
and the sinks' settings models, so the API accepts exactly what the forwarder can run.
"""

from __future__ import annotations

from typing import Any, TypeVar

import orjson
from pydantic import BaseModel, ValidationError
from pydantic_core import to_json

from control.bodies import FieldProblem, OutputView, PartnerView, SettingField
from core.routing import Routing
from partners.adapters import ADAPTERS
from partners.adapters.base import AdapterSettings
from partners.catalog import CATALOG, Output, OutputConfigError, Partner, resolve_output
from schemas.parsing import field_errors
from schemas.records import ConnectionConfig, OutputConfig

Model = TypeVar("Model", bound=BaseModel)


class InvalidBodyError(ValueError):
    """A request body the API refuses (422); reasons never quote input values."""

    def __init__(self, problems: list[FieldProblem]) -> None:
        super().__init__("; ".join(f"{p.field}: {p.reason}" for p in problems))
        self.problems = problems


def problems_of(error: ValidationError, prefix: str = "") -> list[FieldProblem]:
    return [
        FieldProblem(field=e.field or "body", reason=e.reason) for e in field_errors(error, prefix)
    ]


def parse_body(model: type[Model], body: bytes) -> Model:
    try:
        return model.model_validate_json(body or b"null")
    except ValidationError as error:
        raise InvalidBodyError(problems_of(error)) from None


def merged(model: type[Model], record: BaseModel, update: BaseModel) -> Model:
    """``record`` with the fields ``update`` sets replaced, validated as ``model`` again."""
    document = record.model_dump(mode="json") | update.model_dump(mode="json", exclude_unset=True)
    # pydantic's encoder, as the records are written with: orjson refuses integers past 64 bits.
    return parse_body(model, to_json(document))


def settings_model(partner: Partner) -> type[AdapterSettings] | None:
    return ADAPTERS[partner.adapter].settings_model if partner.adapter else None


def settings_problems(partner: Partner, settings: dict[str, Any]) -> list[FieldProblem]:
    model = settings_model(partner)
    if model is None:
        # Nothing reads them: the partner's records are consumed from forward-<output_id>.
        return [
            FieldProblem(
                field=f"settings.{name}",
                reason=f"unknown setting: partner {partner.name!r} has no built-in sink and "
                "takes no settings",
            )
            for name in settings
        ]
    try:
        model.model_validate(settings)
    except ValidationError as error:
        return problems_of(error, "settings")
    return []


def validated_output(config: OutputConfig) -> Output:
    try:
        output = resolve_output(config)
    except OutputConfigError as error:
        raise InvalidBodyError([FieldProblem(field=error.field, reason=error.reason)]) from None
    problems = settings_problems(CATALOG[output.partner], output.settings)
    if problems:
        raise InvalidBodyError(problems)
    return output


def output_record(output: Output) -> OutputConfig:
    """The record that configures ``output`` as it was resolved."""
    return OutputConfig.model_validate_json(
        orjson.dumps(
            {
                "output_id": output.output_id,
                "partner": output.partner,
                "name": output.name,
                "accepted_identities": sorted(output.accepted_identities),
                "supports_attributes": output.supports_attributes,
                "settings": output.settings,
            }
        )
    )


def output_view(output: Output) -> OutputView:
    shown = not settings_problems(CATALOG[output.partner], output.settings)
    return OutputView(
        output_id=output.output_id,
        partner=output.partner,
        name=output.name,
        accepted_identities=sorted(output.accepted_identities),
        supports_attributes=output.supports_attributes,
        settings=dict(output.settings) if shown else None,
    )


def connection_problems(connection: ConnectionConfig, routing: Routing) -> list[FieldProblem]:
    output = routing.outputs.get(connection.output_id)
    if output is None:
        return [FieldProblem(field="output_id", reason="no such output")]
    if connection.forwarded_attributes and not output.supports_attributes:
        return [
            FieldProblem(
                field="forwarded_attributes",
                reason=f"the output (partner {output.partner!r}) does not take attributes",
            )
        ]
    return []


def duplicate_connection(connection: ConnectionConfig, routing: Routing) -> str | None:
    """The id of another connection of the same audience to the same output, if any."""
    for other in routing.connections_for(connection.audience_id):
        if (
            other.output_id == connection.output_id
            and other.connection_id != connection.connection_id
        ):
            return other.connection_id
    return None


def setting_fields(model: type[AdapterSettings]) -> list[SettingField]:
    """The model's fields as a form asks for them: required ones first, in model order."""
    schema = model.model_json_schema()
    required = set(schema.get("required", ()))
    fields = []
    for name, spec in schema["properties"].items():
        # An optional field is anyOf [its type, null]: the form asks for its type.
        shape = next((s for s in spec.get("anyOf", [spec]) if s.get("type") != "null"), spec)
        fields.append(
            SettingField(
                name=name,
                type=shape.get("type", "string"),
                format=shape.get("format"),
                required=name in required,
                default=spec.get("default"),
                description=spec.get("description", ""),
                secret=name.endswith("_env"),
            )
        )
    return sorted(fields, key=lambda field: not field.required)


def partner_view(partner: Partner) -> PartnerView:
    model = settings_model(partner)
    fields = model.model_fields if model else {}
    return PartnerView(
        name=partner.name,
        description=partner.description,
        accepted_identities=sorted(partner.accepted_identities),
        supports_attributes=partner.supports_attributes,
        configurable=partner.configurable,
        sink=partner.adapter,
        required_settings=[name for name, info in fields.items() if info.is_required()],
        optional_settings=[name for name, info in fields.items() if not info.is_required()],
        settings=setting_fields(model) if model else [],
        batch_limit=partner.batch_limit,
        rate_per_second=partner.rate_limit.per_second,
        rate_burst=partner.rate_limit.burst,
    )
