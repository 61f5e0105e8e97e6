"""Offsets of handled records are committed together, never past a record not yet handled, and never for a
partition the consumer no longer owns."""

import asyncio
from types import SimpleNamespace
from typing import Any
from unittest.mock import create_autospec

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaConnectionError
from faststream.message import AckStatus
from kit.messaging import OffsetCommitter

P0 = TopicPartition("case.submitted", 0)
P1 = TopicPartition("case.submitted", 1)


def consumer(assigned: set[TopicPartition]) -> Any:
    fake = create_autospec(AIOKafkaConsumer, instance=True)
    fake.assignment.return_value = assigned
    return fake


def record(consumer: Any, tp: TopicPartition, offset: int) -> Any:
    """What FastStream hands the handler: the record, and the consumer that read it (not yet acknowledged)."""
    raw = SimpleNamespace(topic=tp.topic, partition=tp.partition, offset=offset)
    return SimpleNamespace(consumer=consumer, raw_message=raw, committed=None)


def committer_for(kafka: Any) -> OffsetCommitter:
    committer = OffsetCommitter(interval_seconds=3600)  # flushed by hand below
    committer.subscriber = SimpleNamespace(consumer=kafka)  # type: ignore[assignment]
    return committer


async def test_records_handled_together_are_committed_in_one_round_trip_after_the_last_of_each_partition() -> None:
    kafka = consumer({P0, P1})
    committer = committer_for(kafka)
    messages = [record(kafka, P0, 5), record(kafka, P0, 6), record(kafka, P1, 2)]
    for message in messages:
        committer.handled(message)

    assert all(m.committed == AckStatus.ACKED for m in messages), "FastStream must not commit each one itself"
    kafka.commit.assert_not_called()
    await committer.flush()
    kafka.commit.assert_awaited_once_with({P0: 7, P1: 3})
    await committer.flush()
    kafka.commit.assert_awaited_once()  # nothing new handled: no second round trip


async def test_a_partition_taken_away_is_left_to_its_new_owner_and_a_failed_commit_is_tried_again() -> None:
    kafka = consumer({P1})
    committer = committer_for(kafka)
    committer.handled(record(kafka, P0, 5))  # P0 was revoked while this record was being handled
    committer.handled(record(kafka, P1, 9))
    kafka.commit.side_effect = KafkaConnectionError()
    await committer.flush()
    kafka.commit.assert_awaited_once_with({P1: 10})

    kafka.commit.side_effect = None
    committer.handled(record(kafka, P1, 10))
    await committer.flush()
    assert kafka.commit.await_args.args == ({P1: 11},), "the later offset supersedes the one that failed"

    await committer.on_partitions_assigned({P1})  # the rebalance is over: P0 is another's
    kafka.commit.reset_mock()
    await committer.close()
    kafka.commit.assert_not_called()


async def test_offsets_pending_while_nothing_is_assigned_are_committed_once_the_partitions_come_back() -> None:
    """The broker restarts: a commit fails, the consumer rejoins its group (nothing assigned for a moment), and gets
    the same partitions back with no new record on them. The offsets handled before must still be committed, or the
    group shows a lag that is not there, for as long as the partition gets nothing new."""
    kafka = consumer({P0, P1})
    committer = committer_for(kafka)
    committer.handled(record(kafka, P0, 41))
    committer.handled(record(kafka, P1, 7))
    kafka.commit.side_effect = KafkaConnectionError()
    await committer.flush()

    kafka.assignment.return_value = set()  # rejoining
    kafka.commit.side_effect = None
    kafka.commit.reset_mock()
    await committer.flush()
    kafka.commit.assert_not_called()

    kafka.assignment.return_value = {P0}  # P1 went to another consumer of the group
    await committer.on_partitions_assigned({P0})
    await committer.close()
    kafka.commit.assert_awaited_once_with({P0: 42})


async def test_a_rebalance_is_never_held_up_by_a_commit() -> None:
    kafka = consumer({P0})
    committer = committer_for(kafka)
    committer.handled(record(kafka, P0, 41))
    await committer.on_partitions_revoked({P0})  # a commit now could wait on the coordinator the rebalance awaits
    await committer.on_partitions_assigned({P0})
    kafka.commit.assert_not_called()
    await committer.close()  # kept: P0 came back, and everything before offset 42 is handled
    kafka.commit.assert_awaited_once_with({P0: 42})


async def test_a_commit_still_out_is_waited_for_and_never_overtaken_by_a_later_one() -> None:
    """aiokafka sends a commit shielded from its caller: one given up on still lands, whenever the broker answers.
    A later commit must not go out before it, or the older offsets land last and put the group back (seen after a
    broker restart: 1572 committed on a partition, then 1392 and 1396 from commits abandoned during the outage)."""
    kafka = consumer({P0})
    committer = committer_for(kafka)
    broker_back = asyncio.Event()
    landed: list[dict[TopicPartition, int]] = []

    async def commit(offsets: dict[TopicPartition, int]) -> None:
        async def request(first: bool) -> None:
            if first:
                await broker_back.wait()  # the first request waits for the broker; a later one would not
            landed.append(dict(offsets))

        await asyncio.shield(request(first=kafka.commit.await_count == 1))

    kafka.commit.side_effect = commit
    committer.handled(record(kafka, P0, 1391))
    first = asyncio.create_task(committer.flush())
    await asyncio.sleep(0.05)
    first.cancel()  # its caller gives up (a timeout, the consumer stopping): the request is out all the same
    committer.handled(record(kafka, P0, 1571))
    second = asyncio.create_task(committer.flush())
    await asyncio.sleep(0.05)
    assert kafka.commit.await_count == 1, "no second commit while the first is out"
    broker_back.set()
    await second
    assert landed == [{P0: 1392}, {P0: 1572}], "the newest offsets land last"


async def test_a_failed_commit_left_out_by_a_cancelled_flush_is_kept_for_the_next() -> None:
    kafka = consumer({P0})
    committer = committer_for(kafka)
    answer = asyncio.Event()

    async def commit(offsets: dict[TopicPartition, int]) -> None:
        await answer.wait()
        raise KafkaConnectionError()

    kafka.commit.side_effect = commit
    committer.handled(record(kafka, P0, 41))
    flushing = asyncio.create_task(committer.flush())
    await asyncio.sleep(0.05)
    flushing.cancel()
    answer.set()
    kafka.commit.side_effect = None
    await committer.close()
    assert kafka.commit.await_count == 2, "the failed commit's offsets, committed again after it"
    assert kafka.commit.await_args.args == ({P0: 42},)
