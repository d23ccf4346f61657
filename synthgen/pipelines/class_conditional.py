"""A diffusers pipeline for class-conditional ``UNet2DModel`` denoisers.

diffusers ships no pipeline that passes ``class_labels`` to a ``UNet2DModel``
(``DDPMPipeline``/``DDIMPipeline`` are unconditional), so the embedded digits
model uses this small ``DiffusionPipeline`` subclass. It keeps the usual
interface: ``ClassConditionalPipeline.from_pretrained(local_dir)`` and
``pipe(class_labels=..., num_inference_steps=..., guidance_scale=...,
generator=[...])``.

Classifier-free guidance uses the last class embedding as the "no class"
token: the model is trained with label dropout to ``null_class``.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from diffusers import DiffusionPipeline, ImagePipelineOutput, UNet2DModel
from diffusers.schedulers import SchedulerMixin
from diffusers.utils.torch_utils import randn_tensor
from PIL import Image


class ClassConditionalPipeline(DiffusionPipeline):
    """Sample images from a class-conditional ``UNet2DModel`` with optional CFG."""

    model_cpu_offload_seq = "unet"

    def __init__(
        self,
        unet: UNet2DModel,
        scheduler: SchedulerMixin,
        class_names: list[str] | None = None,
    ):
        super().__init__()
        self.register_modules(unet=unet, scheduler=scheduler)
        self.register_to_config(class_names=list(class_names) if class_names else None)

    @property
    def null_class(self) -> int:
        """Index of the "no class" embedding used for the unconditional branch."""
        return int(self.unet.config.num_class_embeds) - 1

    @property
    def labels(self) -> dict[str, int]:
        """Class name -> id, like ``DiTPipeline.labels``."""
        names = self.config.class_names or []
        return {name: i for i, name in enumerate(names)}

    @torch.no_grad()
    def __call__(
        self,
        class_labels: Sequence[int],
        num_inference_steps: int = 20,
        guidance_scale: float = 1.0,
        generator: torch.Generator | list[torch.Generator] | None = None,
        latents: torch.Tensor | None = None,
        output_type: str = "pil",
        return_dict: bool = True,
        height: int | None = None,
        width: int | None = None,
        image: torch.Tensor | None = None,
        strength: float = 1.0,
    ):
        """Denoise one image per entry of ``class_labels``.

        ``generator`` may be a list with one generator per image: each image's
        initial (and any per-step) noise then comes from its own generator, so
        it does not depend on what else is in the batch.

        ``image`` (n, C, H, W in [0, 1]): image-to-image, as diffusers' img2img
        pipelines do it: the images are noised to the timestep ``strength``
        implies (the last ``int(steps * strength)`` steps are run) and denoised
        from there with the class.
        """
        device = self._execution_device
        dtype = self.unet.dtype
        batch = len(class_labels)
        size = self.unet.config.sample_size
        size = (size, size) if isinstance(size, int) else tuple(size)
        size = (height or size[0], width or size[1])  # a convolutional UNet samples larger images too
        shape = (batch, self.unet.config.in_channels, *size)
        if image is not None:
            shape = (batch, self.unet.config.in_channels, *image.shape[-2:])
        if latents is None:
            # Drawn on the CPU in float32 so noise is identical on every device.
            latents = randn_tensor(shape, generator=generator, device=torch.device("cpu"), dtype=torch.float32)
        latents = latents.to(device=device, dtype=dtype)
        labels = torch.as_tensor(list(class_labels), device=device, dtype=torch.long)
        use_cfg = guidance_scale != 1.0
        if use_cfg:
            null = torch.full_like(labels, self.null_class)
            labels_in = torch.cat([labels, null])

        self.scheduler.set_timesteps(num_inference_steps, device=device)
        timesteps = self.scheduler.timesteps
        if image is None:
            latents = latents * self.scheduler.init_noise_sigma
        else:
            timesteps = self._img2img_timesteps(num_inference_steps, strength)
            x0 = (image.to(device=device, dtype=torch.float32) * 2 - 1)
            start = timesteps[:1].repeat(batch)
            latents = self.scheduler.add_noise(x0, latents.float(), start).to(dtype)
        for t in self.progress_bar(timesteps):
            model_in = torch.cat([latents, latents]) if use_cfg else latents
            model_in = self.scheduler.scale_model_input(model_in, t)
            eps = self.unet(model_in, t, class_labels=labels_in if use_cfg else labels).sample
            if use_cfg:
                cond, uncond = eps.chunk(2)
                eps = uncond + guidance_scale * (cond - uncond)
            step_kwargs = {"generator": generator} if _accepts_generator(self.scheduler) else {}
            latents = self.scheduler.step(eps, t, latents, **step_kwargs).prev_sample

        images = (latents.float() / 2 + 0.5).clamp(0, 1)
        if output_type == "pt":
            out = images
        else:
            out = images.permute(0, 2, 3, 1).cpu().numpy()
            if output_type == "pil":
                out = [_to_pil(img) for img in out]
        if not return_dict:
            return (out,)
        return ImagePipelineOutput(images=out)


    def _img2img_timesteps(self, steps: int, strength: float) -> torch.Tensor:
        """The last ``int(steps * strength)`` timesteps (diffusers' img2img ``get_timesteps``)."""
        init = min(int(steps * strength), steps)
        if init < 1:
            raise ValueError(f"strength {strength} with {steps} steps denoises no step")
        order = getattr(self.scheduler, "order", 1)
        t_start = (steps - init) * order
        if hasattr(self.scheduler, "set_begin_index"):
            self.scheduler.set_begin_index(t_start)
        return self.scheduler.timesteps[t_start:]


def _accepts_generator(scheduler) -> bool:
    import inspect

    return "generator" in inspect.signature(scheduler.step).parameters


def _to_pil(img: np.ndarray) -> Image.Image:
    arr = (img * 255).round().astype(np.uint8)
    if arr.shape[-1] == 1:
        return Image.fromarray(arr[..., 0], mode="L")
    return Image.fromarray(arr)
