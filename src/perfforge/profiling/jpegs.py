"""Synthetic ImageNet-like JPEGs and the training transform DeepLearningExamples' ResNet-50 applies to them.

No dataset can be downloaded, so the images are synthesised: colour noise with a power-law amplitude
spectrum 1/f^a, at ImageNet's usual sizes (longest side 500, aspect 1:1, 4:3 or 3:2) and its usual encoding
(quality 96, no chroma subsampling: the ImageNet-compression survey at
terryalanunlimited.com/compression-in-the-imagenet-dataset). Natural photographs have a close to 1;
a = 1.55 is steeper so that the mean file comes out near ImageNet's, about 108 kB (image-net.org lists
ILSVRC2012_img_train.tar at 138 GB for 1,281,167 images): the entropy decoding that dominates JPEG decode
time scales with the compressed bytes. The dataset's mean file size and pixel count are recorded with
every measurement.
"""

from __future__ import annotations

import math
import multiprocessing as mp
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

SIZES = ((500, 500), (500, 375), (375, 500), (500, 333), (333, 500))  # (w, h)
JPEG_QUALITY = 96
CROP = 224
CLASSES = 8
SPECTRUM_EXPONENT = 1.55  # sets the mean file size near ImageNet's (module docstring)


@dataclass(frozen=True)
class DatasetStats:
    images: int
    mean_bytes: float
    mean_pixels: float
    quality: int
    subsampling: str

    def as_params(self) -> dict[str, Any]:
        return {"images": self.images, "mean_bytes": round(self.mean_bytes),
                "mean_pixels": round(self.mean_pixels), "jpeg_quality": self.quality,
                "subsampling": self.subsampling}


def _pink_noise_image(seed: int, w: int, h: int) -> np.ndarray:
    """An RGB uint8 image whose amplitude spectrum falls as 1/f^a, channels partly correlated."""
    rng = np.random.default_rng(seed)
    fy = np.fft.fftfreq(h)[:, None]
    fx = np.fft.rfftfreq(w)[None, :]
    f = np.sqrt(fx * fx + fy * fy)
    f[0, 0] = 1.0
    amp = f ** -SPECTRUM_EXPONENT
    amp[0, 0] = 0.0
    base = rng.standard_normal((h, w // 2 + 1)) + 1j * rng.standard_normal((h, w // 2 + 1))
    chans = []
    for _ in range(3):
        own = rng.standard_normal((h, w // 2 + 1)) + 1j * rng.standard_normal((h, w // 2 + 1))
        field = np.fft.irfft2((0.7 * base + 0.3 * own) * amp, s=(h, w))
        field = (field - field.mean()) / (field.std() + 1e-12)
        chans.append(field)
    img = np.stack(chans, axis=-1) * 48.0 + 118.0
    return np.clip(img, 0, 255).astype(np.uint8)


def _write_one(args: tuple[str, int]) -> int:
    from PIL import Image

    path, seed = args
    w, h = SIZES[seed % len(SIZES)]
    Image.fromarray(_pink_noise_image(seed, w, h)).save(path, "JPEG", quality=JPEG_QUALITY,
                                                        subsampling=0)
    return os.path.getsize(path)


def synth_jpeg_dataset(root: str | os.PathLike[str], n: int = 1024, seed: int = 0,
                       processes: int | None = None) -> DatasetStats:
    """Write ``n`` JPEGs as an ImageFolder tree (``root/class_k/*.JPEG``); reuse if present."""
    root = Path(root)
    jobs = []
    for i in range(n):
        d = root / f"class_{i % CLASSES}"
        d.mkdir(parents=True, exist_ok=True)
        jobs.append((str(d / f"img_{i:06d}.JPEG"), seed * 1_000_003 + i))
    todo = [j for j in jobs if not os.path.exists(j[0])]
    if todo:
        procs = max(1, min(processes or os.cpu_count() or 1, len(todo)))
        if procs == 1:
            for j in todo:
                _write_one(j)
        else:
            with mp.get_context("fork").Pool(procs) as pool:
                pool.map(_write_one, todo, chunksize=8)
    sizes = [os.path.getsize(p) for p, _ in jobs]
    pixels = [SIZES[s % len(SIZES)][0] * SIZES[s % len(SIZES)][1] for _, s in jobs]
    return DatasetStats(images=n, mean_bytes=float(np.mean(sizes)), mean_pixels=float(np.mean(pixels)),
                        quality=JPEG_QUALITY, subsampling="4:4:4")


def list_images(root: str | os.PathLike[str]) -> list[str]:
    return sorted(str(p) for p in Path(root).glob("class_*/*.JPEG"))


# ---- the DeepLearningExamples "pytorch" data path --------------------------------------------
def _crop_box(width: int, height: int, rng: np.random.Generator) -> tuple[int, int, int, int]:
    """RandomResizedCrop's box: area 8-100%, aspect 3/4-4/3 (log-uniform), 10 tries, then centre."""
    area = width * height
    for _ in range(10):
        target = area * rng.uniform(0.08, 1.0)
        ratio = math.exp(rng.uniform(math.log(3 / 4), math.log(4 / 3)))
        w = int(round(math.sqrt(target * ratio)))
        h = int(round(math.sqrt(target / ratio)))
        if 0 < w <= width and 0 < h <= height:
            x, y = int(rng.integers(0, width - w + 1)), int(rng.integers(0, height - h + 1))
            return x, y, w, h
    side = min(width, height)
    return (width - side) // 2, (height - side) // 2, side, side


def make_transform(backend: str = "auto") -> tuple[Callable[[str, np.random.Generator], np.ndarray], str]:
    """``(load_and_augment(path, rng) -> HWC uint8 array, name)``.

    ``torchvision``: ImageFolder's PIL loader + ``RandomResizedCrop(224)`` + ``RandomHorizontalFlip``
    (what DeepLearningExamples runs); ``pil``: the same steps written on PIL alone, for hosts
    without torchvision. ``auto`` picks torchvision when it imports.
    """
    from PIL import Image

    if backend in ("auto", "torchvision"):
        try:
            from torchvision import transforms
        except ImportError:
            if backend == "torchvision":
                raise
        else:
            aug = transforms.Compose([transforms.RandomResizedCrop(CROP),
                                      transforms.RandomHorizontalFlip()])

            def tv(path: str, rng: np.random.Generator) -> np.ndarray:
                # torchvision draws from torch's CPU generator, seeded per worker by the caller
                with open(path, "rb") as fh:
                    img = Image.open(fh).convert("RGB")
                return np.asarray(aug(img), dtype=np.uint8)

            return tv, "torchvision"
    if backend not in ("auto", "pil"):
        raise ValueError(f"unknown transform backend {backend!r} (choose from auto, torchvision, pil)")

    def pil(path: str, rng: np.random.Generator) -> np.ndarray:
        with open(path, "rb") as fh:
            img = Image.open(fh).convert("RGB")
        x, y, w, h = _crop_box(img.width, img.height, rng)
        img = img.resize((CROP, CROP), Image.Resampling.BILINEAR, box=(x, y, x + w, y + h))
        if rng.random() < 0.5:
            img = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        return np.asarray(img, dtype=np.uint8)

    return pil, "pil"
