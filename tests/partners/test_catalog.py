"""Catalog refusals name the field and the allowed values, never the value given."""

from __future__ import annotations

import pytest

from partners.adapters import ADAPTERS, OutputSettingsError, adapter_settings
from partners.catalog import CATALOG, OutputConfigError, resolve_output
from schemas.records import IdentityType, OutputConfig

SECRET = "s3cr3t-partner-name"


def test_an_unknown_partner_is_refused_with_the_known_ones_not_the_name() -> None:
    with pytest.raises(OutputConfigError) as refused:
        resolve_output(OutputConfig(output_id="o-1", partner=SECRET))
    assert refused.value.field == "partner"
    assert SECRET not in str(refused.value)
    assert refused.value.reason == f"unknown partner (known: {', '.join(sorted(CATALOG))})"


def test_adapter_settings_problems_name_settings_fields() -> None:
    config = OutputConfig(
        output_id="o-1",
        partner="webhook",
        accepted_identities=[IdentityType.EMAIL],
        settings={"url": SECRET, "token_env": "T"},
    )
    with pytest.raises(OutputSettingsError) as refused:
        adapter_settings(ADAPTERS["webhook"], resolve_output(config))
    assert str(refused.value).startswith("output o-1: settings.url: ")
    assert SECRET not in str(refused.value)
