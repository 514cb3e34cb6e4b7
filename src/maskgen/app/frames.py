"""Pictures of a partial sampling state: the live view of the app and its GIF.

MaskGIT (Chang et al. 2022, Fig. 2 and Sec. 3.2) shows iterative decoding as the token grid
filling in over T steps; the app shows the same two things after each step of the loop
(``on_step``): the token grid, revealed cells coloured by their token and masked cells
grey, and the decoded image with every masked token's patch grey and hatched. A masked
token is decoded as code 0 (a zero latent for continuous tokens) and then covered by the
hatch, so its neighbours' pixels may show a trace of it; the hatch marks what is not drawn yet.
"""

from __future__ import annotations

import base64
import colorsys
import io
from functools import lru_cache

import numpy as np
import torch
from PIL import Image
from torch import Tensor

GREY, HATCH = 128, 96  # mid-grey cell with darker diagonal lines: "not drawn yet"
GOLDEN = 0.6180339887  # hue step: neighbouring code ids get far-apart colours


def _hatch(h: int, w: int) -> np.ndarray:
    """A mid-grey tile [h, w] with a diagonal line every 4 pixels."""
    yy, xx = np.mgrid[0:h, 0:w]
    return np.where((yy + xx) % 4 == 0, HATCH, GREY).astype(np.uint8)


def _upsample(cells: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Per-token values [B, h, w, ...] -> per-pixel [B, H, W, ...] (each token covers its patch)."""
    h, w = cells.shape[1:3]
    return cells.repeat(size[0] // h, axis=1).repeat(size[1] // w, axis=2)


@torch.no_grad()
def partial_images(mg, x: Tensor) -> np.ndarray:
    """The decoded images (uint8 [B, H, W, C]) of state ``x`` with masked patches hatched."""
    denoiser = mg.denoiser()
    masked = denoiser.masked(x)
    if mg.continuous:
        images = mg.tokenizer.decode(torch.nan_to_num(x, nan=0.0))
    else:
        images = mg.tokenizer.decode(x.masked_fill(masked, 0).view(-1, *denoiser.grid))
    images = images.cpu().permute(0, 2, 3, 1).numpy().copy()
    h, w = images.shape[1:3]
    cover = _upsample(masked.cpu().numpy().reshape(-1, *denoiser.grid), (h, w))
    images[cover] = _hatch(h, w)[None].repeat(len(images), 0)[cover][:, None]
    return images


def token_colours(mg, x: Tensor) -> np.ndarray:
    """One RGB colour per token (uint8 [B, N, 3]): a hue per code id, or for continuous tokens
    the first three latent channels squashed to [0, 1] (masked tokens: any colour)."""
    if mg.continuous:
        rgb = torch.sigmoid(torch.nan_to_num(x[..., :3].float(), nan=0.0)).cpu().numpy()
        if rgb.shape[-1] < 3:
            rgb = np.concatenate([rgb, np.full((*rgb.shape[:2], 3 - rgb.shape[-1]), 0.5)], -1)
    else:
        rgb = _palette(mg.denoiser().mask_id + 1)[x.cpu().numpy()]
    return (rgb * 255).round().astype(np.uint8)


@lru_cache(maxsize=4)
def _palette(size: int) -> np.ndarray:
    """RGB in [0, 1] for code ids 0..size-1 (float [size, 3])."""
    return np.array([colorsys.hsv_to_rgb((k * GOLDEN) % 1.0, 0.65, 0.95) for k in range(size)])


def token_grid_pictures(mg, x: Tensor, cell: int = 8) -> np.ndarray:
    """The token grids of state ``x`` as pictures (uint8 [B, h*cell, w*cell, 3]), masked cells hatched."""
    h, w = mg.denoiser().grid
    big = _upsample(token_colours(mg, x).reshape(-1, h, w, 3), (h * cell, w * cell))
    cover = _upsample(mg.denoiser().masked(x).cpu().numpy().reshape(-1, h, w), (h * cell, w * cell))
    big[cover] = _hatch(h * cell, w * cell)[None].repeat(len(big), 0)[cover][:, None]
    return big


def png(image: np.ndarray) -> bytes:
    """PNG bytes of one uint8 image [H, W, C] (C = 1 or 3)."""
    buf = io.BytesIO()
    Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image).save(buf, format="PNG")
    return buf.getvalue()


def data_url(png_bytes: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png_bytes).decode("ascii")


def tensor_url(image: Tensor) -> str:
    """A PNG data URL of one uint8 image tensor [C, H, W]."""
    return data_url(png(image.permute(1, 2, 0).cpu().numpy().astype(np.uint8)))


def gif_frame(tokens: np.ndarray, image: np.ndarray, step: int, steps: int, side: int = 128) -> Image.Image:
    """One GIF frame: the token grid and the decoded image side by side, ``side`` pixels each
    (nearest-neighbour), over a bar that shows the step: no two frames are alike, so the GIF
    writer keeps one frame per step."""
    def scaled(a: np.ndarray) -> Image.Image:
        pic = Image.fromarray(a[..., 0] if a.shape[-1] == 1 else a).convert("RGB")
        return pic.resize((side, side), Image.NEAREST)

    frame = Image.new("RGB", (2 * side + 4, side + 6), (255, 255, 255))
    frame.paste(scaled(tokens), (0, 0))
    frame.paste(scaled(image), (side + 4, 0))
    done = round(frame.width * (step + 1) / steps)
    frame.paste((40, 90, 200), (0, side + 2, done, side + 6))
    return frame


def gif(frames: list[Image.Image], ms_per_frame: int = 400) -> bytes:
    """An animated GIF (looping) of ``frames``."""
    buf = io.BytesIO()
    frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:], duration=ms_per_frame, loop=0)
    return buf.getvalue()
