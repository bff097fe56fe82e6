"""The Kubernetes manifests in deploy/k8s, generated from the services and the topic catalogue
so that they cannot drift from them: `python -m devstack.k8s deploy/k8s` (`make k8s`).

Per service: a Deployment of two replicas (migrations in an init container, serialised by an
advisory lock), a Service, a HorizontalPodAutoscaler and a PodDisruptionBudget. For the broker
(Strimzi): a KafkaTopic per topic and dead-letter topic, and a KafkaUser per service with SCRAM
credentials and ACLs that let it write only the topics it produces and read only those it
consumes (LEAST-ACCESS). Every connection is TLS: HTTPS with the service's certificate, Kafka
SASL_SSL, PostgreSQL verify-full (TLS).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import yaml

from shared.contracts.topics import TOPICS, dead_letter_topic

NAMESPACE = "quittance"
KAFKA_CLUSTER = "quittance"  # the Strimzi Kafka resource these topics and users belong to
PARTITIONS = 12  # the most consumers of a group that can share a topic's work
REPLICAS = 3
IMAGE = "ghcr.io/quittance/{service}:0.1.0"
PORTS = {"billing": 8000, "notifications": 8001, "retention": 8002, "audit": 8003, "ops": 8004}
MAX_REPLICAS = {"billing": 10, "notifications": 6, "retention": 4, "audit": 6, "ops": 2}
CA_MOUNT = "/etc/quittance/ca"
TLS_MOUNT = "/etc/quittance/tls"
# Each service's secrets: the Secret `<service>-secrets` holds these keys (made by the operator,
# never committed), and each becomes the environment variable of the same setting.
SECRETS: dict[str, dict[str, str]] = {
    "billing": {
        "BILLING_DATABASE_URL": "database-url",
        "BILLING_KEYSTORE__URL": "keystore-url",
        "BILLING_KEYSTORE__MASTER_KEY": "keystore-master-key",
        "BILLING_AUDIT_TOKEN_SIGNING_KEY": "audit-token-signing-key",
        "BILLING_OPERATOR_TOKEN": "operator-token",
        "BILLING_PAYMENTS__API_KEY": "payments-api-key",
        "BILLING_PAYMENTS__WEBHOOK_SECRET": "payments-webhook-secret",
    },
    "notifications": {
        "NOTIFICATIONS_DATABASE_URL": "database-url",
        "NOTIFICATIONS_KEYSTORE__URL": "keystore-url",
        "NOTIFICATIONS_KEYSTORE__MASTER_KEY": "keystore-master-key",
        "NOTIFICATIONS_OPERATOR_TOKEN": "operator-token",
        "NOTIFICATIONS_SMTP__PASSWORD": "smtp-password",
    },
    "retention": {
        "RETENTION_DATABASE_URL": "database-url",
        "RETENTION_KEYSTORE__URL": "keystore-url",
        "RETENTION_KEYSTORE__MASTER_KEY": "keystore-master-key",
        "RETENTION_CERTIFICATE_KEY": "certificate-key",
        "RETENTION_CERTIFICATE_SIGNING_KEY": "certificate-signing-key",
        "RETENTION_OPERATOR_TOKEN": "operator-token",
    },
    "audit": {
        "AUDIT_DATABASE_URL": "database-url",
        "AUDIT_KEYSTORE__URL": "keystore-url",
        "AUDIT_KEYSTORE__MASTER_KEY": "keystore-master-key",
        "AUDIT_REFERENCE_KEY": "reference-key",
        "AUDIT_CHECKPOINT_SIGNING_KEY": "checkpoint-signing-key",
        "AUDIT_BILLING_TOKEN_PUBLIC_KEY": "billing-token-public-key",
        "AUDIT_OPERATOR_TOKEN": "operator-token",
    },
    "ops": {
        "OPS_SESSION_KEY": "session-key",
        "OPS_BILLING_OPERATOR_TOKEN": "billing-operator-token",
        "OPS_NOTIFICATIONS_OPERATOR_TOKEN": "notifications-operator-token",
        "OPS_RETENTION_OPERATOR_TOKEN": "retention-operator-token",
        "OPS_AUDIT_OPERATOR_TOKEN": "audit-operator-token",
    },
}
CONSUMERS = ("billing", "notifications", "retention", "audit")


def _labels(service: str) -> dict[str, str]:
    return {"app.kubernetes.io/name": service, "app.kubernetes.io/part-of": "quittance"}


def _metadata(name: str, service: str) -> dict[str, Any]:
    return {"name": name, "namespace": NAMESPACE, "labels": _labels(service)}


def _environment(service: str) -> list[dict[str, Any]]:
    """The service's settings: plain values, then the secrets by reference."""
    prefix = f"{service.upper()}_"
    plain: dict[str, str] = {f"{prefix}ENVIRONMENT": "production"}
    plain |= {
        f"{prefix}TLS__CERTFILE": f"{TLS_MOUNT}/tls.crt",
        f"{prefix}TLS__KEYFILE": f"{TLS_MOUNT}/tls.key",
    }
    if service in CONSUMERS:
        plain |= {
            "PGSSLROOTCERT": f"{CA_MOUNT}/ca.crt",  # asyncpg's verify-full trusts this CA
            f"{prefix}KAFKA__BOOTSTRAP_SERVERS": f"{KAFKA_CLUSTER}-kafka-bootstrap.kafka:9093",
            f"{prefix}KAFKA__SECURITY_PROTOCOL": "SASL_SSL",
            f"{prefix}KAFKA__SASL_MECHANISM": "SCRAM-SHA-512",
            f"{prefix}KAFKA__SASL_USERNAME": service,
            f"{prefix}KAFKA__SSL_CAFILE": "/etc/quittance/kafka-ca/ca.crt",
            f"{prefix}KAFKA__PARTITIONS": str(PARTITIONS),
            f"{prefix}OTLP_ENDPOINT": "http://otel-collector.observability:4318",
            f"{prefix}EXPORT_STORE__S3_BUCKET": f"quittance-{service}-exports",
        }
    if service == "retention":
        plain["RETENTION_PUBLIC_URL"] = "https://exports.quittance.example"
    if service == "billing":
        plain["BILLING_AUDIT_URL"] = "https://audit.quittance.example"
        plain["BILLING_PAYMENTS__GATEWAY"] = "stripe"
    if service == "ops":
        services = {name: f"https://{name}.{NAMESPACE}.svc:{PORTS[name]}" for name in CONSUMERS}
        plain["OPS_SERVICES"] = yaml.safe_dump(services, default_flow_style=True).strip()
        # The dashboard reads the services over HTTPS: it trusts the cluster's CA for that.
        plain["SSL_CERT_FILE"] = f"{CA_MOUNT}/ca.crt"
        plain["OPS_SECURE_COOKIE"] = "true"
    variables: list[dict[str, Any]] = [{"name": k, "value": v} for k, v in plain.items()]
    secret = f"{service}-secrets"
    variables += [
        {"name": name, "valueFrom": {"secretKeyRef": {"name": secret, "key": key}}}
        for name, key in SECRETS[service].items()
    ]
    if service in CONSUMERS:
        # Strimzi's User Operator keeps the SCRAM password in a Secret named after the user.
        variables.append(
            {
                "name": f"{prefix}KAFKA__SASL_PASSWORD",
                "valueFrom": {"secretKeyRef": {"name": service, "key": "password"}},
            }
        )
    return variables


def _volumes(service: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    volumes: list[dict[str, Any]] = [
        {"name": "tls", "secret": {"secretName": f"{service}-tls"}},
        {
            "name": "ca",
            "secret": {
                "secretName": "quittance-ca",
                "items": [{"key": "ca.crt", "path": "ca.crt"}],
            },
        },
        {"name": "tmp", "emptyDir": {}},
    ]
    mounts: list[dict[str, Any]] = [
        {"name": "tls", "mountPath": TLS_MOUNT, "readOnly": True},
        {"name": "ca", "mountPath": CA_MOUNT, "readOnly": True},
        {"name": "tmp", "mountPath": "/tmp"},  # noqa: S108 - the container's own scratch space
    ]
    if service in CONSUMERS:
        volumes.append(
            {
                "name": "kafka-ca",
                "secret": {
                    "secretName": f"{KAFKA_CLUSTER}-cluster-ca-cert",
                    "items": [{"key": "ca.crt", "path": "ca.crt"}],
                },
            }
        )
        mounts.append(
            {"name": "kafka-ca", "mountPath": "/etc/quittance/kafka-ca", "readOnly": True}
        )
    return volumes, mounts


def deployment(service: str) -> dict[str, Any]:
    """Two replicas in one consumer group; the database migrated before either serves."""
    port = PORTS[service]
    environment = _environment(service)
    volumes, mounts = _volumes(service)
    hardened = {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }
    image = IMAGE.format(service=service)
    container: dict[str, Any] = {
        "name": service,
        "image": image,
        "command": [
            "python",
            "-m",
            f"{service}.main",
            "serve",
            "--host",
            "0.0.0.0",
            "--port",
            str(port),
        ],
        "ports": [{"name": "https", "containerPort": port}],
        "env": environment,
        "volumeMounts": mounts,
        # Ready when /healthz says so (broker, database, relay, lag); alive while it listens:
        # a lagging consumer is not helped by a restart.
        "readinessProbe": {
            "httpGet": {"path": "/healthz", "port": "https", "scheme": "HTTPS"},
            "periodSeconds": 5,
            "failureThreshold": 3,
        },
        "livenessProbe": {
            "tcpSocket": {"port": "https"},
            "periodSeconds": 10,
            "failureThreshold": 6,
        },
        "resources": {
            "requests": {"cpu": "250m", "memory": "256Mi"},
            "limits": {"memory": "768Mi"},
        },
        "securityContext": hardened,
    }
    pod: dict[str, Any] = {
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": 10001,
            "fsGroup": 10001,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        # Long enough for the relay to finish its batch and the consumers to leave their group.
        "terminationGracePeriodSeconds": 45,
        "automountServiceAccountToken": False,
        "containers": [container],
        "volumes": volumes,
        "topologySpreadConstraints": [
            {
                "maxSkew": 1,
                "topologyKey": "kubernetes.io/hostname",
                "whenUnsatisfiable": "ScheduleAnyway",
                "labelSelector": {"matchLabels": _labels(service)},
            }
        ],
    }
    if service in CONSUMERS:
        pod["initContainers"] = [
            {
                "name": "migrate",
                "image": image,
                "command": ["python", "-m", f"{service}.main", "migrate"],
                "env": environment,
                "volumeMounts": mounts,
                "securityContext": hardened,
            }
        ]
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _metadata(service, service),
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": _labels(service)},
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1},
            },
            "template": {"metadata": {"labels": _labels(service)}, "spec": pod},
        },
    }


def service_resource(service: str) -> dict[str, Any]:
    """The service's cluster address, HTTPS on its port."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _metadata(service, service),
        "spec": {
            "selector": _labels(service),
            "ports": [{"name": "https", "port": PORTS[service], "targetPort": "https"}],
        },
    }


def autoscaler(service: str) -> dict[str, Any]:
    """More replicas under CPU load, never fewer than two; at most one per partition."""
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": _metadata(service, service),
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": service},
            "minReplicas": 2,
            "maxReplicas": min(MAX_REPLICAS[service], PARTITIONS),
            "metrics": [
                {
                    "type": "Resource",
                    "resource": {
                        "name": "cpu",
                        "target": {"type": "Utilization", "averageUtilization": 70},
                    },
                }
            ],
        },
    }


def disruption_budget(service: str) -> dict[str, Any]:
    """A node drain leaves one replica serving."""
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": _metadata(service, service),
        "spec": {"minAvailable": 1, "selector": {"matchLabels": _labels(service)}},
    }


def topics() -> list[dict[str, Any]]:
    """A KafkaTopic per catalogue topic and per dead-letter topic."""
    names = sorted({n for topic in TOPICS for n in (topic.name, dead_letter_topic(topic.name))})
    return [
        {
            "apiVersion": "kafka.strimzi.io/v1",
            "kind": "KafkaTopic",
            "metadata": {
                # Kubernetes names take no dots or underscores; the topic keeps its own name.
                "name": name.replace(".", "-").replace("_", "-"),
                "namespace": "kafka",
                "labels": {"strimzi.io/cluster": KAFKA_CLUSTER},
            },
            "spec": {
                "topicName": name,
                "partitions": PARTITIONS,
                "replicas": REPLICAS,
                "config": {
                    "min.insync.replicas": 2,
                    "cleanup.policy": "delete",
                    # Longer than any consumer can be down; the inboxes remember 14 days.
                    "retention.ms": 7 * 24 * 3600 * 1000,
                },
            },
        }
        for name in names
    ]


def users() -> list[dict[str, Any]]:
    """A KafkaUser per service: write what it produces, read what it consumes, its own group."""
    resources = []
    for service in CONSUMERS:
        acls: list[dict[str, Any]] = []
        for topic in TOPICS:
            operations = []
            if service in topic.producers:
                operations += ["Write", "Describe"]
            if service in topic.consumers:
                operations += ["Read", "Describe"]
                # Its dead letters: the consumer writes them and redrives from them.
                acls.append(
                    {
                        "resource": {
                            "type": "topic",
                            "name": dead_letter_topic(topic.name),
                            "patternType": "literal",
                        },
                        "operations": ["Write", "Read", "Describe"],
                    }
                )
            if operations:
                acls.append(
                    {
                        "resource": {"type": "topic", "name": topic.name, "patternType": "literal"},
                        "operations": sorted(set(operations)),
                    }
                )
        acls.append(
            {
                "resource": {"type": "group", "name": service, "patternType": "literal"},
                "operations": ["Read", "Describe"],
            }
        )
        # The relay and the broker check read the cluster's metadata.
        acls.append({"resource": {"type": "cluster"}, "operations": ["Describe"]})
        resources.append(
            {
                "apiVersion": "kafka.strimzi.io/v1",
                "kind": "KafkaUser",
                "metadata": {
                    "name": service,
                    "namespace": "kafka",
                    "labels": {"strimzi.io/cluster": KAFKA_CLUSTER},
                },
                "spec": {
                    "authentication": {"type": "scram-sha-512"},
                    "authorization": {"type": "simple", "acls": acls},
                },
            }
        )
    return resources


def manifests() -> dict[str, list[dict[str, Any]]]:
    """Every file of deploy/k8s and the resources it holds."""
    files: dict[str, list[dict[str, Any]]] = {
        "namespace.yaml": [
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}}
        ]
    }
    for service in PORTS:
        files[f"{service}.yaml"] = [
            deployment(service),
            service_resource(service),
            autoscaler(service),
            disruption_budget(service),
        ]
    files["kafka-topics.yaml"] = topics()
    files["kafka-users.yaml"] = users()
    return files


HEADER = (
    "# Generated by `make k8s` (python -m devstack.k8s deploy/k8s) from the services and the\n"
    "# topic catalogue: edit devstack/src/devstack/k8s.py, not this file.\n"
)


class _PlainDumper(yaml.SafeDumper):
    """Writes a repeated value out again instead of as an anchor and alias."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def render() -> dict[str, str]:
    """Each file's text, and the kustomization listing them."""
    files = {
        name: HEADER + yaml.dump_all(resources, Dumper=_PlainDumper, sort_keys=False, width=100)
        for name, resources in manifests().items()
    }
    kustomization = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": list(files),
    }
    files["kustomization.yaml"] = HEADER + yaml.safe_dump(kustomization, sort_keys=False)
    return files


def main() -> None:
    """Write the manifests into the folder given (deploy/k8s)."""
    folder = Path(sys.argv[1] if len(sys.argv) > 1 else "deploy/k8s")
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in render().items():
        (folder / name).write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
