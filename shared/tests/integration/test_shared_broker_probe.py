"""The broker probe tells a broker that still holds what it acknowledged from one that forgot."""

from __future__ import annotations

import pytest
from aiokafka import AIOKafkaProducer, TopicPartition

from shared.kafka import AckedRecord, BrokerProbe, ensure_topics, record_digest, topic_names
from shared.settings import KafkaSettings

pytestmark = pytest.mark.integration


async def _produce(kafka: KafkaSettings, topic: str, values: list[bytes]) -> list[AckedRecord]:
    producer = AIOKafkaProducer(bootstrap_servers=kafka.bootstrap_servers, acks="all")
    await producer.start()
    try:
        acked = []
        for value in values:
            meta = await producer.send_and_wait(topic, value, partition=0)
            acked.append(AckedRecord(meta.offset, record_digest(value)))
        return acked
    finally:
        await producer.stop()


@pytest.fixture
async def kafka(kafka_bootstrap: str, topic_prefix: str) -> KafkaSettings:
    settings = KafkaSettings(bootstrap_servers=kafka_bootstrap, topic_prefix=topic_prefix)
    await ensure_topics(settings, ["invoice.issued"])
    return settings


async def test_a_broker_holding_the_acknowledged_records_is_the_same_broker(
    kafka: KafkaSettings,
) -> None:
    topic = kafka.topic("invoice.issued")
    acked = await _produce(kafka, topic, [b"first", b"second", b"third"])
    probe = BrokerProbe(kafka, topics=topic_names(kafka, ["invoice.issued"]))
    assert await probe.forgotten({TopicPartition(topic, 0): acked[-1]}) is None
    assert await probe.forgotten({TopicPartition(topic, 0): acked[0]}) is None, "not the last"


async def test_a_partition_that_ends_before_the_acknowledged_offset_was_forgotten(
    kafka: KafkaSettings,
) -> None:
    topic = kafka.topic("invoice.issued")
    acked = await _produce(kafka, topic, [b"only"])
    probe = BrokerProbe(kafka, topics=[])
    later = AckedRecord(acked[0].offset + 5, record_digest(b"only"))
    reason = await probe.forgotten({TopicPartition(topic, 0): later})
    assert reason is not None
    assert "before the record acknowledged" in reason


async def test_another_record_at_the_acknowledged_offset_means_a_new_broker(
    kafka: KafkaSettings,
) -> None:
    topic = kafka.topic("invoice.issued")
    acked = await _produce(kafka, topic, [b"written after a restart"])
    probe = BrokerProbe(kafka, topics=[])
    ours = AckedRecord(acked[0].offset, record_digest(b"what we had sent"))
    reason = await probe.forgotten({TopicPartition(topic, 0): ours})
    assert reason is not None
    assert "holds another record" in reason


async def test_a_missing_declared_topic_or_a_new_cluster_id_means_a_new_broker(
    kafka: KafkaSettings,
) -> None:
    probe = BrokerProbe(kafka, topics=topic_names(kafka, ["invoice.issued", "never.created"]))
    reason = await probe.forgotten({})
    assert reason is not None
    assert f"topic {kafka.topic('never.created')} is missing" in reason

    probe = BrokerProbe(kafka, topics=topic_names(kafka, ["invoice.issued"]))
    assert await probe.forgotten({}) is None
    probe._cluster_id = "the-cluster-before"  # Tansu always says tansu_cluster
    reason = await probe.forgotten({})
    assert reason is not None
    assert "cluster id changed" in reason


async def test_a_topic_with_fewer_partitions_than_declared_is_reported_once(
    kafka: KafkaSettings,
) -> None:
    wide = kafka.model_copy(update={"partitions": 8})  # more than the topics have
    probe = BrokerProbe(wide, topics=topic_names(kafka, ["invoice.issued"]))
    reason = await probe.forgotten({})
    assert reason is not None
    assert "partitions, not 8" in reason
    assert await probe.forgotten({}) is None, "then accepted as it is"
