"""Shard runs whose machine died: set Crashed by a Prefect automation once their heartbeats stop.

A shard run whose process is killed alone is reported Crashed by its
worker, and the driver submits it again. When the whole machine goes (power,
a preempted VM, a container killed with its worker) nothing is left to
report, and the run would stay Running: the job's driver would wait for
ever. Prefect's flow engine sends a heartbeat event every
``PREFECT_FLOWS_HEARTBEAT_FREQUENCY`` seconds; the shard deployment sets that
to ``Settings.shard_heartbeat_s``, and the driver keeps one automation on the
server (Prefect's own way to catch such "zombie" runs) that sets a shard run
Crashed when neither a heartbeat nor a final state came for ``MISSED``
heartbeats and a margin. The driver then submits the shard again, as for any
crashed run (``PrefectPoolExecutor``).
"""

from __future__ import annotations

from datetime import timedelta

from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import StateType
from prefect.events.actions import ChangeFlowRunState
from prefect.events.schemas.automations import AutomationCore, EventTrigger, Posture

AUTOMATION = "synthgen: crash shard runs whose heartbeats stopped"
HEARTBEAT_ENV = "PREFECT_FLOWS_HEARTBEAT_FREQUENCY"
MISSED = 2  # heartbeats missed in a row before a run counts as lost
MARGIN_S = 15  # for an event delayed on its way to the server
# A run that ended (any way) sends its final state's event: only a run that went silent is crashed.
ENDED = {f"prefect.flow-run.{s}" for s in ("Completed", "Failed", "Cancelled", "Crashed")}


def heartbeat_env(heartbeat_s: int) -> dict[str, str]:
    """The environment a shard run needs to send its heartbeat every ``heartbeat_s`` seconds."""
    return {HEARTBEAT_ENV: str(heartbeat_s)}


def silence_limit(heartbeat_s: int) -> timedelta:
    """How long a run may go without a heartbeat before it is crashed."""
    return timedelta(seconds=MISSED * heartbeat_s + MARGIN_S)


def lost_run_automation(flow_name: str, heartbeat_s: int) -> AutomationCore:
    """The automation that crashes runs of flow ``flow_name`` silent for ``silence_limit(heartbeat_s)``."""
    return AutomationCore(
        name=AUTOMATION,
        description=f"Sets a {flow_name} flow run Crashed when its heartbeats ({heartbeat_s} s apart) stop "
                    "without a final state: its machine died. The synthgen job that submitted it runs it again.",
        trigger=EventTrigger(
            after={"prefect.flow-run.heartbeat"},
            expect={"prefect.flow-run.heartbeat", *ENDED},
            match={"prefect.resource.id": "prefect.flow-run.*"},
            match_related={"prefect.resource.role": "flow", "prefect.resource.name": flow_name},
            for_each={"prefect.resource.id"},
            posture=Posture.Proactive,
            threshold=1,
            within=silence_limit(heartbeat_s),
        ),
        actions=[ChangeFlowRunState(state=StateType.CRASHED,
                                    message=f"no heartbeat for {silence_limit(heartbeat_s).seconds} s: the machine "
                                            "running this shard died; its job submits the shard again")],
    )


def ensure_lost_run_automation(flow_name: str, heartbeat_s: int) -> str:
    """Create the automation on the server, or update the one there to these settings; its id."""
    want = lost_run_automation(flow_name, heartbeat_s)
    with get_client(sync_client=True) as client:
        found = client.read_automations_by_name(AUTOMATION)
        if not found:
            return str(client.create_automation(want))
        client.update_automation(found[0].id, want)
        return str(found[0].id)
