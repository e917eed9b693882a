"""The built-in adapters, by the name a catalog entry gives in ``Partner.adapter``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from pydantic import ValidationError

from partners.adapters.ad_audiences import AdAudiencesAdapter, AdAudiencesSettings
from partners.adapters.base import Adapter, AdapterContext, AdapterSettings
from partners.adapters.email_crm import EmailCrmAdapter, EmailCrmSettings
from partners.adapters.jsonl import JsonlAdapter, JsonlSettings
from partners.adapters.webhook import WebhookAdapter, WebhookSettings
from partners.catalog import Output
from schemas.parsing import field_errors

SettingsT = TypeVar("SettingsT", bound=AdapterSettings)


@dataclass(frozen=True, slots=True)
class AdapterKind(Generic[SettingsT]):
    settings_model: type[SettingsT]
    build: Callable[[SettingsT, AdapterContext], Adapter[Any]]


ADAPTERS: dict[str, AdapterKind[Any]] = {
    "webhook": AdapterKind(WebhookSettings, WebhookAdapter),
    "ad-audiences": AdapterKind(AdAudiencesSettings, AdAudiencesAdapter),
    "email-crm": AdapterKind(EmailCrmSettings, EmailCrmAdapter),
    "jsonl": AdapterKind(JsonlSettings, JsonlAdapter),
}


class OutputSettingsError(ValueError):
    """Output settings that do not fit the adapter; the message never quotes a value."""


def adapter_settings(kind: AdapterKind[SettingsT], output: Output) -> SettingsT:
    try:
        return kind.settings_model.model_validate(output.settings)
    except ValidationError as error:
        problems = "; ".join(f"{e.field}: {e.reason}" for e in field_errors(error, "settings"))
        raise OutputSettingsError(f"output {output.output_id}: {problems}") from None
