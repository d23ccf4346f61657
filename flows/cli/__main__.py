"""``python -m flows.cli``: the ``synthgen`` command."""

from flows.cli.app import entrypoint

entrypoint()
