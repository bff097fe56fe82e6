"""deploy/k8s: the Kubernetes and Strimzi manifests are the generated ones, valid against the
Kubernetes schemas (strict) and Strimzi's, and they agree with the code: every setting they
give exists, every topic is declared, each service's broker user reaches only its own topics,
and each service scales out within its partitions."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml
from pydantic import BaseModel
from pydantic_settings import BaseSettings

from devstack import k8s
from shared.contracts.topics import TOPICS, dead_letter_topic

ROOT = Path(__file__).resolve().parents[1]
FOLDER = ROOT / "deploy" / "k8s"
KUBERNETES_VERSION = "1.33"
SETTINGS = {
    "billing": "billing.settings:BillingSettings",
    "notifications": "notifications.settings:NotificationsSettings",
    "retention": "retention.settings:RetentionSettings",
    "audit": "audit.settings:AuditSettings",
    "ops": "ops.settings:OpsSettings",
}
# The variables read by libraries, not by our settings: libpq's CA for verify-full (asyncpg),
# the CA bundle httpx trusts.
LIBRARY_VARIABLES = {"PGSSLROOTCERT", "SSL_CERT_FILE"}

# Strimzi's KafkaTopic and KafkaUser (kafka.strimzi.io/v1), the parts these manifests use, as
# the operator's CRDs define them.
_ACL_OPERATIONS = [
    "Read", "Write", "Create", "Delete", "Alter", "Describe", "ClusterAction",
    "AlterConfigs", "DescribeConfigs", "IdempotentWrite", "All",
]  # fmt: skip
STRIMZI_SCHEMAS: dict[str, dict[str, Any]] = {
    "KafkaTopic": {
        "type": "object",
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "properties": {
            "metadata": {
                "type": "object",
                "required": ["name", "labels"],
                "properties": {
                    "name": {"type": "string", "pattern": "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"},
                    "labels": {"type": "object", "required": ["strimzi.io/cluster"]},
                },
            },
            "spec": {
                "type": "object",
                "additionalProperties": False,
                "properties": {
                    "topicName": {"type": "string", "pattern": "^[a-zA-Z0-9._-]{1,249}$"},
                    "partitions": {"type": "integer", "minimum": 1},
                    "replicas": {"type": "integer", "minimum": 1, "maximum": 32767},
                    "config": {"type": "object"},
                },
            },
        },
    },
    "KafkaUser": {
        "type": "object",
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "properties": {
            "metadata": {
                "type": "object",
                "required": ["name", "labels"],
                "properties": {"labels": {"type": "object", "required": ["strimzi.io/cluster"]}},
            },
            "spec": {
                "type": "object",
                "additionalProperties": False,
                "properties": {
                    "authentication": {
                        "type": "object",
                        "required": ["type"],
                        "properties": {"type": {"enum": ["tls", "tls-external", "scram-sha-512"]}},
                    },
                    "authorization": {
                        "type": "object",
                        "required": ["acls", "type"],
                        "properties": {
                            "type": {"enum": ["simple"]},
                            "acls": {
                                "type": "array",
                                "items": {
                                    "type": "object",
                                    "required": ["resource", "operations"],
                                    "additionalProperties": False,
                                    "properties": {
                                        "type": {"enum": ["allow", "deny"]},
                                        "host": {"type": "string"},
                                        "resource": {
                                            "type": "object",
                                            "required": ["type"],
                                            "additionalProperties": False,
                                            "properties": {
                                                "type": {
                                                    "enum": [
                                                        "topic",
                                                        "group",
                                                        "cluster",
                                                        "transactionalId",
                                                    ]
                                                },
                                                "name": {"type": "string"},
                                                "patternType": {"enum": ["literal", "prefix"]},
                                            },
                                        },
                                        "operations": {
                                            "type": "array",
                                            "items": {"enum": _ACL_OPERATIONS},
                                        },
                                    },
                                },
                            },
                        },
                    },
                },
            },
        },
    },
}


def _resources() -> list[dict[str, Any]]:
    return [
        resource
        for path in sorted(FOLDER.glob("*.yaml"))
        if path.name != "kustomization.yaml"
        for resource in yaml.safe_load_all(path.read_text())
    ]


def _of_kind(kind: str) -> list[dict[str, Any]]:
    return [resource for resource in _resources() if resource["kind"] == kind]


def test_the_committed_manifests_are_the_generated_ones() -> None:
    for name, text in k8s.render().items():
        path = FOLDER / name
        assert path.is_file(), f"run `make k8s`: {name} is missing"
        assert path.read_text() == text, f"run `make k8s`: {name} differs"
    assert {p.name for p in FOLDER.glob("*.yaml")} == set(k8s.render())


def test_every_kubernetes_resource_is_valid_against_the_kubernetes_schemas() -> None:
    checked = 0
    for resource in _resources():
        if resource["apiVersion"].startswith("kafka.strimzi.io/"):
            continue
        kubernetes_validate.validate(resource, KUBERNETES_VERSION, strict=True)
        checked += 1
    # A namespace, and per service a Deployment, a Service, an autoscaler and a budget.
    assert checked == 1 + 4 * len(k8s.PORTS)


def test_every_strimzi_resource_is_valid_against_strimzis_schema() -> None:
    strimzi = [r for r in _resources() if r["apiVersion"] == "kafka.strimzi.io/v1"]
    assert {r["kind"] for r in strimzi} == set(STRIMZI_SCHEMAS)
    for resource in strimzi:
        jsonschema.validate(resource, STRIMZI_SCHEMAS[resource["kind"]])
    invalid = {**_of_kind("KafkaTopic")[0], "spec": {"partitions": 0, "replicas": 3}}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(invalid, STRIMZI_SCHEMAS["KafkaTopic"])


def _setting_exists(settings: type[BaseModel], path: list[str]) -> bool:
    """Whether `KAFKA__SASL_USERNAME` (as parts) names a field of the settings, nested too."""
    fields = {name.upper(): field for name, field in settings.model_fields.items()}
    field = fields.get(path[0])
    if field is None:
        return False
    if len(path) == 1:
        return True
    nested = field.annotation
    return (
        isinstance(nested, type)
        and issubclass(nested, BaseModel)
        and _setting_exists(nested, path[1:])
    )


@pytest.mark.parametrize("service", list(k8s.PORTS))
def test_every_variable_a_deployment_sets_is_a_setting_of_its_service(service: str) -> None:
    module, name = SETTINGS[service].split(":")
    settings: type[BaseSettings] = getattr(importlib.import_module(module), name)
    deployment = next(d for d in _of_kind("Deployment") if d["metadata"]["name"] == service)
    pod = deployment["spec"]["template"]["spec"]
    containers = pod["containers"] + pod.get("initContainers", [])
    prefix = f"{service.upper()}_"
    for container in containers:
        for variable in container["env"]:
            name = variable["name"]
            if name in LIBRARY_VARIABLES:
                continue
            assert name.startswith(prefix), f"{service}: {name} is not one of its settings"
            path = name.removeprefix(prefix).split("__")
            assert _setting_exists(settings, path), f"{service}: {name} names no setting"
    environment = {v["name"]: v.get("value") for v in pod["containers"][0]["env"]}
    assert environment[f"{prefix}ENVIRONMENT"] == "production"  # refuses plaintext at start


def test_every_catalogue_topic_and_its_dead_letters_is_declared() -> None:
    declared = {topic["spec"]["topicName"] for topic in _of_kind("KafkaTopic")}
    expected = {n for topic in TOPICS for n in (topic.name, dead_letter_topic(topic.name))}
    assert declared == expected
    for topic in _of_kind("KafkaTopic"):
        assert topic["spec"]["replicas"] >= 3
        assert topic["spec"]["config"]["min.insync.replicas"] >= 2


@pytest.mark.clause("LEAST-ACCESS")
def test_each_services_broker_user_writes_what_it_produces_and_reads_what_it_consumes() -> None:
    for user in _of_kind("KafkaUser"):
        service = user["metadata"]["name"]
        writes = set()
        reads = set()
        for acl in user["spec"]["authorization"]["acls"]:
            resource = acl["resource"]
            if resource["type"] != "topic":
                continue
            if "Write" in acl["operations"]:
                writes.add(resource["name"])
            if "Read" in acl["operations"]:
                reads.add(resource["name"])
        produced = {t.name for t in TOPICS if service in t.producers}
        consumed = {t.name for t in TOPICS if service in t.consumers}
        dead_letters = {dead_letter_topic(name) for name in consumed}
        assert writes == produced | dead_letters, service
        assert reads == consumed | dead_letters, service
    # For instance: notifications never writes an invoice.
    users = {u["metadata"]["name"]: u for u in _of_kind("KafkaUser")}
    assert not any(
        acl["resource"].get("name") == "invoice.issued" and "Write" in acl["operations"]
        for acl in users["notifications"]["spec"]["authorization"]["acls"]
    )


def test_each_service_runs_two_replicas_and_scales_within_its_partitions() -> None:
    """Two instances share each consumer group from the start; more than one per partition
    would stand idle."""
    (partitions,) = {t["spec"]["partitions"] for t in _of_kind("KafkaTopic")}
    for deployment in _of_kind("Deployment"):
        assert deployment["spec"]["replicas"] == 2
    for autoscaler in _of_kind("HorizontalPodAutoscaler"):
        assert 2 == autoscaler["spec"]["minReplicas"] <= autoscaler["spec"]["maxReplicas"]
        assert autoscaler["spec"]["maxReplicas"] <= partitions


@pytest.mark.clause("TLS")
def test_the_deployments_serve_https_and_reach_the_broker_and_databases_over_tls() -> None:
    for deployment in _of_kind("Deployment"):
        container = deployment["spec"]["template"]["spec"]["containers"][0]
        environment = {v["name"]: v.get("value") for v in container["env"]}
        prefix = f"{deployment['metadata']['name'].upper()}_"
        assert environment[f"{prefix}TLS__CERTFILE"]
        assert environment[f"{prefix}TLS__KEYFILE"]
        assert container["readinessProbe"]["httpGet"]["scheme"] == "HTTPS"
        if f"{prefix}KAFKA__SECURITY_PROTOCOL" in environment:
            assert environment[f"{prefix}KAFKA__SECURITY_PROTOCOL"] == "SASL_SSL"
