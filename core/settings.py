"""Service settings, read from FORWARDER_* environment variables (and a .env file)."""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from core.errors import ConfigError
from schemas.parsing import field_errors


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="FORWARDER_", env_file=".env", extra="ignore", validate_default=True
    )

    kafka_bootstrap: str = Field(
        "127.0.0.1:9092", min_length=1, description="Comma-separated host:port list."
    )
    kafka_connect_timeout_s: float = Field(
        30.0,
        ge=0,
        le=3600,
        description="How long a process retries at start until the broker answers.",
    )
    app_id: str = Field("audience-forwarder", min_length=1, description="Consumer group id.")
    topic_prefix: str = Field("", description="Prepended to every topic name, e.g. 'prod.'.")
    input_partitions: int = Field(
        8, ge=1, le=1024, description="Partitions of profile-updates and audience-memberships."
    )
    outbound_partitions: int = Field(8, ge=1, le=1024, description="Partitions of forward-*.")
    replication_factor: int = Field(1, ge=1, le=16, description="Of the topics it creates.")
    store: Literal["memory", "rocksdb"] = Field("memory", description="Table store.")
    data_dir: Path = Field(Path("var/forwarder"), description="Table data (RocksDB) folder.")
    rocksdb_write_buffer_mb: int = Field(
        16,
        ge=1,
        le=1024,
        description="RocksDB memtable size per table partition; at most two are held.",
    )
    rocksdb_block_cache_mb: int = Field(
        16, ge=1, le=16_384, description="RocksDB block cache per table partition."
    )
    web_host: str = Field("127.0.0.1", description="Interface of the health/metrics server.")
    web_port: int = Field(6066, ge=1, le=65535)
    batch_max: int = Field(1000, ge=1, le=100_000, description="Events processed per batch.")
    producer_linger_ms: int = Field(
        5, ge=0, le=1000, description="How long the producer waits to fill a request."
    )
    # A sync chunk's state writes all go to one changelog partition, one batch per request:
    # 262,144 took four times the round trips (a 300,000-member sync: 48,000 to 49,000
    # members/s against 52,000 to 53,000).
    producer_batch_bytes: int = Field(
        1_000_000,
        ge=1024,
        le=16_777_216,
        description="Largest producer batch per partition, at most the smallest max.message.bytes "
        "of the worker's topics (start-up lowers it to that).",
    )
    log_level: Literal["debug", "info", "warning", "error"] = "info"

    # Limits that keep every record's consequences inside Kafka's message size (see README).
    max_record_bytes: int = Field(
        262_144,
        ge=65_536,
        le=8_388_608,
        description="Largest input record value, profile state and outbound record; larger "
        "inputs are dead-lettered as too_large. Checked at start against the producer's and "
        "the broker's message size.",
    )
    sync_marks_max: int = Field(
        16,
        ge=0,
        le=1000,
        description="Syncs a partition's profile states may lag behind: a sync writes one mark "
        "per partition instead of every state it changes, and a state is brought up to date "
        "when it is next read. The sync that finds this many writes every state they change "
        "and clears them; 0 makes every sync write its states.",
    )
    max_identity_values: int = Field(
        100, ge=1, le=100_000, description="Most values one identity type may hold per profile."
    )
    consumer_max_fetch_bytes: int = Field(
        4_194_304,
        ge=65_536,
        le=104_857_600,
        description="Largest fetch per partition: at least the input and config topics' "
        "max.message.bytes, so that an oversized record is fetched (and dead-lettered), "
        "never left unfetched in front of its partition.",
    )
    consumer_fetch_max_wait_ms: int = Field(
        100,
        ge=1,
        le=10_000,
        description="How long a fetch waits at the broker for data. aiokafka sends one fetch "
        "per broker at a time, so a fetch waiting here holds back the partitions drained "
        "meanwhile (Faust's own 1,500 ms made live records wait up to a second).",
    )
    consumer_fetch_min_bytes: int = Field(
        1,
        ge=1,
        le=1_048_576,
        description="How much data a fetch waits for at the broker (up to "
        "FORWARDER_CONSUMER_FETCH_MAX_WAIT_MS). 1 answers at once with whatever arrived: the "
        "lowest latency. A steady, moderate load costs less CPU with larger fetches.",
    )
    producer_max_request_bytes: int = Field(
        1_048_576, ge=4096, le=104_857_600, description="The producer's max.request.size."
    )
    # Bounded waits, so that a stuck broker or a wedged task never hangs a worker unseen.
    ack_timeout_s: float = Field(
        60.0, gt=0, le=3600, description="Longest wait for Kafka to acknowledge a batch's sends."
    )
    stall_timeout_s: float = Field(
        120.0,
        gt=0,
        le=86_400,
        description="/healthz turns 503 when no batch completed for this long while input waits.",
    )
    shutdown_timeout_s: float = Field(
        30.0,
        gt=0,
        le=3600,
        description="SIGTERM stops the worker within this long, whatever it does.",
    )
    table_standby_replicas: int = Field(
        0,
        ge=0,
        le=16,
        description="Workers that also replay each changelog partition to take over faster.",
    )
    partner_count_interval_s: float = Field(
        60.0,
        ge=1,
        le=86_400,
        description="How often a worker counts the profiles each partner holds, from its state "
        "(forwarder_partner_profiles).",
    )

    # The control plane (`forwarder api`) and the clients of it (`forwarder outputs ...`).
    api_host: str = Field("127.0.0.1", description="Interface of the control-plane API.")
    api_port: int = Field(6068, ge=1, le=65535)
    api_token: SecretStr | None = Field(None, description="Bearer token that API writes need.")
    api_writes_enabled: bool = Field(True, description="False: the API serves reads only.")
    worker_metrics_urls: list[str] = Field(
        [], description="Workers' /metrics URLs (JSON list) the API sums per-connection stats of."
    )

    # Managed Kafka (MSK, Confluent Cloud, Redpanda Cloud): passed through to aiokafka.
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    ssl_cafile: Path | None = None
    ssl_certfile: Path | None = None
    ssl_keyfile: Path | None = None

    @model_validator(mode="after")
    def _sasl_complete(self) -> Settings:
        if self.security_protocol.startswith("SASL_") and not (
            self.sasl_mechanism and self.sasl_username and self.sasl_password
        ):
            raise ValueError(
                "FORWARDER_SECURITY_PROTOCOL SASL_* needs FORWARDER_SASL_MECHANISM, "
                "FORWARDER_SASL_USERNAME and FORWARDER_SASL_PASSWORD"
            )
        return self

    def topic(self, name: str) -> str:
        return f"{self.topic_prefix}{name}"

    @property
    def group_id(self) -> str:
        """The worker's consumer group and Faust app id; prefixed like every topic, so two
        deployments with different prefixes share no group, changelog or assignor topic."""
        return f"{self.topic_prefix}{self.app_id}"

    def ssl_context(self) -> ssl.SSLContext | None:
        if self.security_protocol not in ("SSL", "SASL_SSL"):
            return None
        context = ssl.create_default_context(
            cafile=str(self.ssl_cafile) if self.ssl_cafile else None
        )
        if self.ssl_certfile:
            context.load_cert_chain(
                str(self.ssl_certfile), str(self.ssl_keyfile) if self.ssl_keyfile else None
            )
        return context

    def sasl(self) -> tuple[str, str | None, str] | None:
        """The SASL mechanism, user name and password, if SASL is configured."""
        if not self.sasl_mechanism:
            return None
        password = self.sasl_password.get_secret_value() if self.sasl_password else ""
        return self.sasl_mechanism, self.sasl_username, password

    def kafka_client_options(self) -> dict[str, Any]:
        """Connection options for aiokafka clients (consumers, producers, admin)."""
        options: dict[str, Any] = {
            "bootstrap_servers": self.kafka_bootstrap,
            "security_protocol": self.security_protocol,
        }
        context = self.ssl_context()
        if context is not None:
            options["ssl_context"] = context
        sasl = self.sasl()
        if sasl is not None:
            mechanism, username, password = sasl
            options["sasl_mechanism"] = mechanism
            options["sasl_plain_username"] = username
            options["sasl_plain_password"] = password
        return options


class SettingsError(ConfigError):
    """Start-up stops with one line naming the bad setting."""


def load_settings(**overrides: Any) -> Settings:
    try:
        return Settings(**overrides)
    except ValidationError as error:
        first = field_errors(error)[0]
        name = first.field.split(".")[0]
        where = f"FORWARDER_{name.upper()}" if name else "settings"
        raise SettingsError(f"forwarder: invalid setting {where}: {first.reason}") from None
