"""The automation that crashes shard runs whose machine died: one per heartbeat interval, kept, never reset."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from prefect.client.orchestration import get_client

from flows.executors.lost_runs import (automation_name, definition, ensure_lost_run_automation, heartbeat_tag,
                                       lost_run_automation, silence_limit)

REPO = Path(__file__).resolve().parents[3]


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


ORDER_CHECK = """
import itertools, json
from prefect.events.schemas.automations import AutomationCore
from flows.executors.lost_runs import definition, lost_run_automation
want = lost_run_automation(45)
sent = want.model_dump(mode="json")
for order in itertools.permutations(sent["trigger"]["expect"]):
    back = AutomationCore.model_validate_json(json.dumps({**sent, "trigger": {**sent["trigger"], "expect": list(order)}}))
    assert definition(back) == definition(want), order
"""


@pytest.mark.parametrize("hash_seed", ["7", "12", "20"])
def test_the_definition_does_not_depend_on_the_order_the_server_lists_event_names_in(hash_seed):
    # The server answers with the trigger's sets as JSON lists in its own hash order. In a process whose
    # string hashes collide (these seeds; about one in five), a set rebuilt from another order iterates
    # differently. Every order must read as the same definition, or a driver updates an unchanged
    # automation and resets its windows.
    done = subprocess.run([sys.executable, "-c", ORDER_CHECK], env={**os.environ, "PYTHONHASHSEED": hash_seed},
                          capture_output=True, text=True, cwd=REPO)
    assert done.returncode == 0, done.stderr[-2000:]


def test_the_definition_sees_a_changed_trigger():
    changed = lost_run_automation(45).model_copy(deep=True)
    changed.trigger.within = silence_limit(90)
    assert definition(changed) != definition(lost_run_automation(45))
