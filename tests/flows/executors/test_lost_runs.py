"""The automation that crashes shard runs whose machine died: one per heartbeat interval, kept, never reset."""

from __future__ import annotations

from prefect.client.orchestration import get_client

from flows.executors.lost_runs import (automation_name, definition, ensure_lost_run_automation, heartbeat_tag,
                                       lost_run_automation, silence_limit)


def _named(heartbeat_s: int) -> list:
    with get_client(sync_client=True) as client:
        return client.read_automations_by_name(automation_name(heartbeat_s))


def test_one_automation_per_interval_created_once_and_not_replaced(prefect_server):
    first = ensure_lost_run_automation(45)
    # Another job's driver starting: the same automation, not updated (an update would reset its windows).
    # ensure updates only when the stored definition differs from the wanted one: what the server hands
    # back must compare equal. (Not checked by the server's `updated` time: under load the server itself
    # was seen to touch it a second after creating it.)
    stored = _named(45)
    assert [str(a.id) for a in stored] == [first] and definition(stored[0]) == definition(lost_run_automation(45))
    assert ensure_lost_run_automation(45) == first
    with get_client(sync_client=True) as client:  # two drivers that created it at once: one copy stays
        client.create_automation(lost_run_automation(45))
    assert ensure_lost_run_automation(45) == first and len(_named(45)) == 1
    # Another interval: its own automation, watching only runs tagged with it, for its own window.
    other = ensure_lost_run_automation(90)
    assert other != first and len(_named(45)) == len(_named(90)) == 1
    watched = _named(90)[0].trigger
    assert watched.model_dump(mode="json")["match_related"] == {"prefect.resource.role": "tag",
                                                                "prefect.resource.id": f"prefect.tag.{heartbeat_tag(90)}"}
    assert watched.within == silence_limit(90) and silence_limit(90).total_seconds() == 2 * 90 + 15
