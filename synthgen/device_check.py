"""Check that the devices a job names exist in this process, before any service starts.

``generator.device: cuda:99`` passes the spec's pattern; without this check
it fails inside the flow, after Prefect and MLflow have started, with torch's
own assertion. torch is imported only when a spec names ``cuda`` or ``mps``
(``auto`` and ``cpu`` always work), so a CPU job pays nothing for the check.
"""

from __future__ import annotations

from synthgen.spec import JobSpec, SpecError


def device_problem(device: str) -> str | None:
    """Why this process cannot use ``device`` ('cuda:1', 'mps', ...), or None when it can."""
    if device in ("auto", "cpu"):
        return None
    import torch

    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            why = "this torch is built without CUDA" if torch.version.cuda is None else "torch sees no GPU"
            return f"CUDA is not available ({why}); use cpu or auto"
        index = int(device.partition(":")[2] or 0)
        count = torch.cuda.device_count()
        if index >= count:
            return f"there is no GPU {index}: torch sees {count} (cuda:0..cuda:{count - 1})"
        return None
    if device == "mps":
        mps = getattr(torch.backends, "mps", None)
        return None if mps is not None and mps.is_available() else "MPS is not available here; use cpu or auto"
    return None


def check_devices(spec: JobSpec, generator_here: bool = True) -> None:
    """Raise ``SpecError`` naming the first device field this process cannot use.

    ``generator_here``: False when a work pool's workers sample (their GPUs are not this machine's);
    the embedder runs here either way, for the commit.
    """
    fields = [("embedder.device", spec.embedder.device)]
    if generator_here:
        fields.append(("generator.device", spec.generator.device))
        fields += [("generator.devices", d) for d in spec.generator.devices or []]
    for field, device in fields:
        problem = device_problem(device)
        if problem:
            raise SpecError(f"{field}: {device}: {problem}")
