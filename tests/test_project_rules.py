"""Rules of the project as a whole: boundaries, generated documents, deployment, settings."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import SecretStr, ValidationError

from devstack.testing import RecordingParticipant
from shared.asyncapi import render
from shared.contracts import TOPICS
from shared.settings import KafkaSettings, KeyStoreSettings
from shared.telemetry import create_telemetry

ROOT = Path(__file__).resolve().parents[1]
SERVICES = ("billing", "notifications", "retention", "audit")


def _tool(name: str) -> str:
    path = shutil.which(name, path=str(Path(sys.executable).parent))
    assert path is not None, f"{name} is not installed in the environment"
    return path


def test_services_never_import_each_other() -> None:
    result = subprocess.run(
        [_tool("lint-imports")], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Services never import each other KEPT" in result.stdout


def test_the_committed_asyncapi_document_is_the_generated_one() -> None:
    committed = (ROOT / "docs" / "asyncapi.yaml").read_text()
    assert committed == render(), "run `make asyncapi` and commit docs/asyncapi.yaml"


def test_docker_compose_follows_the_compose_specification() -> None:
    result = subprocess.run(
        [
            _tool("check-jsonschema"),
            "--builtin-schema",
            "vendor.compose-spec",
            "docker-compose.yml",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_service_has_a_dockerfile_the_compose_file_builds() -> None:
    compose = (ROOT / "docker-compose.yml").read_text()
    for service in (*SERVICES, "ops"):
        assert (ROOT / "services" / service / "Dockerfile").is_file()
        assert f"dockerfile: services/{service}/Dockerfile" in compose


_PROMETHEUS_METRIC = re.compile(r'\b(Counter|Gauge|Histogram)\(\s*"([a-z_]+)"')
_OTEL_INSTRUMENT = re.compile(
    r'\bcreate_(counter|up_down_counter|gauge|histogram)\(\s*"([a-z_.]+)"'
)
_PROMQL_WORDS = frozenset({"and", "or", "unless", "bool", "offset", "on", "ignoring", "inf"})


def _exported_metric_names() -> set[str]:
    """Every series name the code registers, as a Prometheus scrape spells it."""
    names = {"up"}  # Prometheus's own, per scrape target
    sources = [*(ROOT / "shared" / "src").rglob("*.py"), *(ROOT / "services").glob("*/src/**/*.py")]
    for source in sources:
        text = source.read_text()
        found = [(kind.lower(), name) for kind, name in _PROMETHEUS_METRIC.findall(text)]
        found += [(kind, name.replace(".", "_")) for kind, name in _OTEL_INSTRUMENT.findall(text)]
        for kind, name in found:
            if kind == "counter":
                names.add(f"{name}_total")
            elif kind == "histogram":
                names.update(f"{name}_{suffix}" for suffix in ("bucket", "count", "sum"))
            else:
                names.add(name)
    return names


def _metric_names_in(expression: str) -> set[str]:
    """The series a PromQL expression reads (label matchers, ranges and groupings dropped)."""
    bare = re.sub(r'"[^"]*"', "", expression)
    bare = re.sub(r"\{[^}]*\}|\[[^\]]*\]", "", bare)
    bare = re.sub(r"\b(by|without|on|ignoring)\s*\([^)]*\)", "", bare)
    return {
        token
        for token in re.findall(r"(?<![\w.:])([a-zA-Z_:][\w:]*)(?![\w:])(?!\s*\()", bare)
        if token not in _PROMQL_WORDS
    }


def test_alert_rules_and_grafana_panels_read_only_metrics_the_services_export() -> None:
    """A renamed metric must not leave an alert that can never fire or an empty panel."""
    exported = _exported_metric_names()
    rules = yaml.safe_load((ROOT / "deploy" / "prometheus" / "alerts.yml").read_text())
    expressions = {
        f"alert {rule['alert']}": rule["expr"]
        for group in rules["groups"]
        for rule in group["rules"]
    }
    dashboard = json.loads(
        (ROOT / "deploy" / "grafana" / "dashboards" / "quittance.json").read_text()
    )
    expressions |= {
        f"panel {panel['title']} ({target['refId']})": target["expr"]
        for panel in dashboard["panels"]
        for target in panel["targets"]
    }
    unknown = {
        where: sorted(_metric_names_in(expression) - exported)
        for where, expression in expressions.items()
        if _metric_names_in(expression) - exported
    }
    assert unknown == {}
    for must in ("consumer_lag", "outbox_oldest", "dead_lettered", "sagas", "chain_verified"):
        assert any(must in e for e in rules_text(rules)), f"an alert on {must}"


def rules_text(rules: Any) -> list[str]:
    """The expressions of every alert rule."""
    return [rule["expr"] for group in rules["groups"] for rule in group["rules"]]


def test_compose_mounts_the_alert_rules_and_grafana_provisioning() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    prometheus = compose["services"]["prometheus"]["volumes"]
    assert "./deploy/prometheus/alerts.yml:/etc/prometheus/alerts.yml:ro" in prometheus
    config = yaml.safe_load((ROOT / "deploy" / "prometheus" / "prometheus.yml").read_text())
    assert config["rule_files"] == ["/etc/prometheus/alerts.yml"]
    grafana = compose["services"]["grafana"]["volumes"]
    assert "./deploy/grafana/provisioning:/etc/grafana/provisioning:ro" in grafana
    assert "./deploy/grafana/dashboards:/var/lib/grafana/dashboards:ro" in grafana


def _routes(service: str) -> Any:
    """A service's routes, registered with stand-ins (registration runs no handler)."""
    handlers = __import__(f"{service}.handlers", fromlist=["create_routes"])
    kwargs: dict[str, Any] = {"telemetry": create_telemetry("rules")}
    if service != "billing":
        kwargs["service"] = None
    if service == "retention":
        kwargs["sweeps"] = None
    if service != "retention":
        data_map = __import__(f"{service}.data_map", fromlist=["DATA_MAP"]).DATA_MAP
        kwargs["participant"] = RecordingParticipant(data_map).kit
    return handlers.create_routes(**kwargs)


@pytest.mark.parametrize("service", SERVICES)
def test_each_service_consumes_exactly_the_topics_the_catalogue_gives_it(service: str) -> None:
    expected = sorted(t.name for t in TOPICS if service in t.consumers)
    assert _routes(service).event_types == expected


@pytest.mark.clause("TERMINATION")
@pytest.mark.parametrize("service", SERVICES)
def test_termination_every_table_with_account_data_is_in_the_data_map_with_every_column(
    service: str,
) -> None:
    """TERMINATION: export and purge derive from the map, so nothing may be missing from it."""
    data_map = __import__(f"{service}.data_map", fromlist=["DATA_MAP"]).DATA_MAP
    models = __import__(f"{service}.models", fromlist=["x"])
    base = next(
        value
        for name, value in vars(models).items()
        if name.endswith("Table") and isinstance(value, type) and hasattr(value, "metadata")
    )
    assert data_map.service == service
    assert data_map.problems(base.metadata) == []


@pytest.mark.clause("TERMINATION")
def test_termination_the_data_map_check_finds_an_undeclared_table_and_column() -> None:
    """The completeness check above can fail: a new table or column is caught."""
    from sqlalchemy import Column, Integer, MetaData, String, Table

    from shared.data_map import AccountDataMap, RetentionCategory, account_table

    metadata = MetaData()
    note = Table(
        "note",
        metadata,
        Column("id", Integer, primary_key=True),
        Column("account_id", Integer),
        Column("secret", String),
    )
    Table("attachment", metadata, Column("id", Integer, primary_key=True))
    data_map = AccountDataMap(
        service="x",
        tables=(
            account_table(
                note, retention=RetentionCategory.CONTRACT, exported=("id", "account_id")
            ),
        ),
    )
    assert data_map.problems(metadata) == [
        "note.secret: not declared (export it, or withhold it with a reason)",
        "attachment: not in the data map (declare it, or say why it is not)",
    ]


def _data_map_and_metadata(service: str) -> tuple[Any, Any]:
    data_map = __import__(f"{service}.data_map", fromlist=["DATA_MAP"]).DATA_MAP
    models = __import__(f"{service}.models", fromlist=["x"])
    base = next(
        value
        for name, value in vars(models).items()
        if name.endswith("Table") and isinstance(value, type) and hasattr(value, "metadata")
    )
    return data_map, base.metadata


@pytest.mark.clause("PLAN-RETENTION")
def test_plan_retention_the_services_holding_swept_tables_are_exactly_the_sweeps_participants() -> (
    None
):
    """PLAN-RETENTION: a service with a table the plan's sweep deletes from receives the sweep
    and reports it; no other does."""
    sweeping = sorted(
        service for service in SERVICES if _data_map_and_metadata(service)[0].swept_tables
    )
    topics = {topic.name: topic for topic in TOPICS}
    assert sorted(topics["retention.sweep_requested"].consumers) == sweeping
    assert sorted(topics["retention.sweep_reported"].producers) == sweeping
    assert sweeping == ["billing", "notifications"]


@pytest.mark.clause("PLAN-RETENTION")
@pytest.mark.parametrize("service", SERVICES)
def test_plan_retention_every_swept_table_has_the_index_its_sweep_reads(service: str) -> None:
    """PLAN-RETENTION: the sweep reads one account's rows past a time; without an index on
    (account, time) each batch would scan the table while the API waits."""
    data_map, metadata = _data_map_and_metadata(service)
    for table in data_map.swept_tables:
        leading = {
            tuple(column.name for column in index.columns)[:2]
            for index in metadata.tables[table.name].indexes
        }
        assert (table.account_column, table.kept_from) in leading, table.name


@pytest.mark.clause("PLAN-RETENTION")
def test_plan_retention_the_data_map_check_wants_a_time_for_every_swept_table() -> None:
    """The check can fail: a delivery log declared without the time its period runs from."""
    from sqlalchemy import Column, DateTime, Integer, MetaData, Table

    from shared.data_map import AccountDataMap, RetentionCategory, account_table

    metadata = MetaData()
    log = Table(
        "log",
        metadata,
        Column("id", Integer, primary_key=True),
        Column("account_id", Integer),
        Column("sent_at", DateTime),
    )
    undated = account_table(
        log, retention=RetentionCategory.DELIVERY_LOG, exported=("id", "account_id", "sent_at")
    )
    assert AccountDataMap(service="x", tables=(undated,)).problems(metadata) == [
        "log: swept by plan, but no kept_from column says from when"
    ]
    misdated = account_table(
        log,
        retention=RetentionCategory.DELIVERY_LOG,
        exported=("id", "account_id", "sent_at"),
        kept_from="sent",
    )
    assert AccountDataMap(service="x", tables=(misdated,)).problems(metadata) == [
        "log.sent: kept_from is not a column"
    ]


@pytest.mark.parametrize(
    ("module", "settings_class", "env"),
    [
        ("billing.settings", "BillingSettings", {}),
        ("retention.settings", "RetentionSettings", {}),
        ("audit.settings", "AuditSettings", {}),
    ],
)
def test_development_secrets_are_refused_outside_development(
    module: str, settings_class: str, env: dict[str, str]
) -> None:
    settings = getattr(__import__(module, fromlist=[settings_class]), settings_class)
    assert settings(environment="development")
    with pytest.raises(ValidationError, match="development default"):
        settings(environment="production")


def _encrypted_connections(service: str) -> dict[str, Any]:
    """A production service's broker and database connections, over TLS."""
    return {
        "database_url": f"postgresql+asyncpg://{service}@db.internal/{service}?ssl=verify-full",
        "kafka": KafkaSettings(
            bootstrap_servers="kafka.internal:9093",
            security_protocol="SASL_SSL",
            sasl_username=service,
            sasl_password=SecretStr(f"{service}-broker-secret"),
        ),
    }


def test_production_settings_accept_real_secrets() -> None:
    from audit.settings import AuditSettings
    from billing.settings import BillingSettings
    from retention.settings import RetentionSettings
    from shared.signing import SigningKey

    keystore = KeyStoreSettings(
        master_key=SecretStr("a-real-master-key"),
        url="postgresql://keystore@db.internal/keystore?sslmode=verify-full",
    )
    assert BillingSettings(
        environment="production",
        **_encrypted_connections("billing"),
        keystore=keystore,
        operator_token="an-operator-secret",  # type: ignore[arg-type]
        audit_token_signing_key=SigningKey.generate().private_pem(),  # type: ignore[arg-type]
    )
    assert AuditSettings(
        environment="production",
        **_encrypted_connections("audit"),
        reference_key="a-secret",  # type: ignore[arg-type]
        operator_token="another-secret",  # type: ignore[arg-type]
        checkpoint_signing_key=SigningKey.generate().private_pem(),  # type: ignore[arg-type]
        billing_token_public_key=SigningKey.generate().public_pem().decode(),  # type: ignore[arg-type]
        keystore=keystore,
    )
    assert RetentionSettings(
        environment="production",
        **_encrypted_connections("retention"),
        certificate_key="another-secret",  # type: ignore[arg-type]
        operator_token="a-third-secret",  # type: ignore[arg-type]
        certificate_signing_key=SigningKey.generate().private_pem(),  # type: ignore[arg-type]
        keystore=keystore,
    )
    with pytest.raises(ValidationError, match="PEM Ed25519"):
        RetentionSettings(
            environment="production",
            **_encrypted_connections("retention"),
            certificate_key="another-secret",  # type: ignore[arg-type]
            operator_token="a-third-secret",  # type: ignore[arg-type]
            certificate_signing_key="not a key",  # type: ignore[arg-type]
            keystore=keystore,
        )


@pytest.mark.clause("TLS")
@pytest.mark.parametrize(
    ("change", "named"),
    [
        (
            {"kafka": KafkaSettings(bootstrap_servers="kafka.internal:9092")},
            "kafka.security_protocol",
        ),
        ({"database_url": "postgresql+asyncpg://billing@db.internal/billing"}, "database_url"),
        (
            {"database_url": "postgresql+asyncpg://billing@db.internal/billing?ssl=require"},
            "database_url",
        ),
        (
            {
                "keystore": KeyStoreSettings(
                    master_key=SecretStr("a-real-master-key"),
                    url="postgresql://keystore@db.internal/keystore?sslmode=prefer",
                )
            },
            "keystore.url",
        ),
    ],
)
def test_tls_production_refuses_to_start_with_a_plaintext_broker_or_database(
    change: dict[str, Any], named: str
) -> None:
    """In production, a connection without TLS (or, for PostgreSQL, without the server's
    certificate and name checked) stops the service at start, naming it."""
    from billing.settings import BillingSettings
    from shared.signing import SigningKey

    production = {
        "environment": "production",
        **_encrypted_connections("billing"),
        "keystore": KeyStoreSettings(
            master_key=SecretStr("a-real-master-key"),
            url="postgresql://keystore@db.internal/keystore?sslmode=verify-full",
        ),
        "operator_token": SecretStr("an-operator-secret"),
        "audit_token_signing_key": SigningKey.generate().private_pem(),
    }
    assert BillingSettings(**production)
    with pytest.raises(ValidationError, match=f"plaintext connections .*{named}"):
        BillingSettings(**(production | change))
    # In development the embedded servers speak plaintext on the loopback.
    assert BillingSettings(**(production | change | {"environment": "development"}))


@pytest.mark.clause("TLS")
def test_tls_sasl_credentials_go_with_sasl_ssl_only() -> None:
    with pytest.raises(ValidationError, match="SASL_SSL needs"):
        KafkaSettings(security_protocol="SASL_SSL", sasl_username="billing")
    with pytest.raises(ValidationError, match="for SASL_SSL only"):
        KafkaSettings(
            security_protocol="SSL", sasl_username="billing", sasl_password=SecretStr("x")
        )


SETTINGS = {
    "billing": "BillingSettings",
    "notifications": "NotificationsSettings",
    "retention": "RetentionSettings",
    "audit": "AuditSettings",
}


@pytest.mark.parametrize("service", SERVICES)
def test_every_address_can_be_set_from_the_environment(
    service: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    prefix = service.upper()
    monkeypatch.setenv(f"{prefix}_DATABASE_URL", "postgresql+asyncpg://u@db.example:5432/x")
    monkeypatch.setenv(f"{prefix}_KAFKA__BOOTSTRAP_SERVERS", "kafka.example:9093")
    monkeypatch.setenv(f"{prefix}_KEYSTORE__URL", "postgresql://u@keys.example:5432/keystore")
    module = __import__(f"{service}.settings", fromlist=[SETTINGS[service]])
    settings = getattr(module, SETTINGS[service])()
    assert settings.database_url == "postgresql+asyncpg://u@db.example:5432/x"
    assert settings.kafka.bootstrap_servers == "kafka.example:9093"
    assert settings.keystore.url == "postgresql://u@keys.example:5432/keystore"


def test_notifications_smtp_address_can_be_set_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from notifications.settings import NotificationsSettings

    monkeypatch.setenv("NOTIFICATIONS_SMTP__HOST", "smtp.example")
    monkeypatch.setenv("NOTIFICATIONS_SMTP__PORT", "587")
    settings = NotificationsSettings()
    assert (settings.smtp.host, settings.smtp.port) == ("smtp.example", 587)


@pytest.mark.clause("TERMINATION")
def test_termination_no_two_services_share_a_volume_in_the_compose_file() -> None:
    """Each service has its own export store: nothing one writes can be read by another (nor
    its private key: each mounts only its own folder of the certificates volume)."""
    import yaml

    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    owners: dict[str, list[str]] = {}
    for service in (*SERVICES, "ops"):
        for volume in compose["services"][service].get("volumes", []):
            if isinstance(volume, dict):  # the long syntax: a volume, or one folder of it
                subpath = volume.get("volume", {}).get("subpath", "")
                name = f"{volume['source']}/{subpath}".rstrip("/")
            else:
                name = str(volume).split(":", 1)[0]
            owners.setdefault(name, []).append(service)
    assert {volume: names for volume, names in owners.items() if len(names) > 1} == {}
