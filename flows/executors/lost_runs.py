"""Shard runs whose machine died: set Crashed by a Prefect automation once their heartbeats stop.

A shard run whose process is killed alone is reported Crashed by its
worker, and the driver submits it again. When the whole machine goes (power,
a preempted VM, a container killed with its worker) nothing is left to
report, and the run would stay Running: the job's driver would wait for
ever. Prefect's flow engine sends a heartbeat event every
``PREFECT_FLOWS_HEARTBEAT_FREQUENCY`` seconds; the driver sets that in each
shard run's environment (``Settings.shard_heartbeat_s``) and tags the run
with the interval, and keeps one automation per interval on the server
(Prefect's own way to catch such "zombie" runs) that sets a run with that tag
Crashed when neither a heartbeat nor a final state came for ``MISSED``
heartbeats and a margin. The driver then submits the shard again, as for any
crashed run (``PrefectPoolExecutor``).

One automation per interval, never replaced while its definition is the
same: Prefect resets an automation's pending windows when it is updated, so
a driver starting another job must not blind the automation to a machine
that died before it started; and jobs with different intervals never judge
each other's runs.
"""

from __future__ import annotations

from datetime import timedelta

from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import StateType
from prefect.events.actions import ChangeFlowRunState
from prefect.events.schemas.automations import AutomationCore, EventTrigger, Posture

HEARTBEAT_ENV = "PREFECT_FLOWS_HEARTBEAT_FREQUENCY"
MISSED = 2  # heartbeats missed in a row before a run counts as lost
MARGIN_S = 15  # for an event delayed on its way to the server
# A run that ended (any way) sends its final state's event: only a run that went silent is crashed.
ENDED = {f"prefect.flow-run.{s}" for s in ("Completed", "Failed", "Cancelled", "Crashed")}


def heartbeat_env(heartbeat_s: int) -> dict[str, str]:
    """The environment a shard run needs to send its heartbeat every ``heartbeat_s`` seconds."""
    return {HEARTBEAT_ENV: str(heartbeat_s)}


def heartbeat_tag(heartbeat_s: int) -> str:
    """The tag of shard runs sending heartbeats ``heartbeat_s`` seconds apart (what the automation watches)."""
    return f"synthgen-heartbeat-{heartbeat_s}s"


def silence_limit(heartbeat_s: int) -> timedelta:
    """How long a run may go without a heartbeat before it is crashed."""
    return timedelta(seconds=MISSED * heartbeat_s + MARGIN_S)


def automation_name(heartbeat_s: int) -> str:
    """The name of the automation for runs tagged ``heartbeat_tag(heartbeat_s)``."""
    return f"synthgen: crash shard runs whose heartbeats stopped ({heartbeat_s} s apart)"


def lost_run_automation(heartbeat_s: int) -> AutomationCore:
    """The automation that crashes runs tagged ``heartbeat_tag(heartbeat_s)`` silent for ``silence_limit``."""
    limit = silence_limit(heartbeat_s)
    return AutomationCore(
        name=automation_name(heartbeat_s),
        description=f"Sets a synthgen shard run Crashed when its heartbeats ({heartbeat_s} s apart) stop without a "
                    "final state: its machine died. The synthgen job that submitted it runs it again.",
        trigger=EventTrigger(
            after={"prefect.flow-run.heartbeat"},
            expect={"prefect.flow-run.heartbeat", *ENDED},
            match={"prefect.resource.id": "prefect.flow-run.*"},
            match_related={"prefect.resource.role": "tag",
                           "prefect.resource.id": f"prefect.tag.{heartbeat_tag(heartbeat_s)}"},
            for_each={"prefect.resource.id"},
            posture=Posture.Proactive,
            threshold=1,
            within=limit,
        ),
        actions=[ChangeFlowRunState(state=StateType.CRASHED,
                                    message=f"no heartbeat for {int(limit.total_seconds())} s: the machine running "
                                            "this shard died; its job submits the shard again")],
    )


def definition(automation) -> dict:
    """What an automation does (its id and server-side fields left out), to compare two.

    Python values, not JSON: the trigger's event names are sets, and a JSON dump lists a set in this
    process's hash order, which for the same names can differ between a set built here and one
    rebuilt from the server's list (itself in the server's hash order). Compared as JSON, an unchanged
    automation then read as changed, and updating it reset its windows.
    """
    return automation.model_dump(include={"name", "description", "enabled", "trigger", "actions"})


def ensure_lost_run_automation(heartbeat_s: int) -> str:
    """The id of the automation for ``heartbeat_s``, created if missing and replaced only if it differs.

    Extra copies (two drivers that created it at once) are removed, the oldest kept: one is enough.
    """
    want = lost_run_automation(heartbeat_s)
    with get_client(sync_client=True) as client:
        found = client.read_automations_by_name(want.name)
        if not found:
            return str(client.create_automation(want))
        *extra, keep = found  # newest first (by when written): keep the oldest, whose windows are running
        for automation in extra:
            client.delete_automation(automation.id)
        if definition(keep) != definition(want):
            client.update_automation(keep.id, want)
        return str(keep.id)
