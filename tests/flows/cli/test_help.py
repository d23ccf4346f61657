"""`synthgen --help` groups every command by what a user is doing, in the order they meet them."""

from typer.testing import CliRunner

from flows.cli.app import app
from flows.cli.common import AUDIT, GENERATE, INSPECT, SCHEDULE, SHARE


def test_help_lists_every_command_in_a_panel_in_workflow_order():
    result = CliRunner().invoke(app, ["--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    text = result.output
    positions = [text.index(f"─ {panel} ") for panel in (GENERATE, INSPECT, AUDIT, SHARE, SCHEDULE)]
    assert positions == sorted(positions)
    panels = {c.name or c.callback.__name__: c.rich_help_panel for c in app.registered_commands}
    assert None not in panels.values(), [name for name, panel in panels.items() if panel is None]
    assert panels["run"] == GENERATE and panels["verify"] == AUDIT and panels["push"] == SHARE
