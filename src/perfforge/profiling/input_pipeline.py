"""Measure an image-training input pipeline: JPEG decode + augmentation rates and loader-fed steps.

Why: a data-parallel ResNet-50 step is only as fast as the host can decode JPEGs. NVIDIA's
DeepLearningExamples ResNet-50 (PyTorch) uses CPU decoding by default, so its multi-GPU
throughput can be bounded by the host, not the GPUs. This module measures that bound directly:

* ``cpu`` records: images/s of the DeepLearningExamples ``pytorch`` data path (PIL open +
  RGB convert, RandomResizedCrop(224, bilinear), horizontal flip, HWC uint8 array) with
  1..N concurrent worker processes, so the per-worker rate under contention is measured;
* ``cuda`` records: nvJPEG batched decode through ``torchvision.io.decode_jpeg`` (the kind of
  decoding DALI moves to the GPU);
* ``model`` records: a ResNet-50 AMP training step fed by a ``DataLoader`` with W workers,
  next to the same step on synthetic on-device data, in one process.

No dataset can be downloaded, so the images are synthesised: colour noise with a power-law
amplitude spectrum 1/f^a, at ImageNet's usual sizes (longest side 500, aspect 1:1, 4:3 or 3:2)
and its usual encoding (quality 96, no chroma subsampling: the ImageNet-compression survey at
terryalanunlimited.com/compression-in-the-imagenet-dataset). Natural photographs have a close
to 1; a = 1.55 is steeper so that the mean file comes out near ImageNet's, about 108 kB
(image-net.org lists ILSVRC2012_img_train.tar at 138 GB for 1,281,167 images): the entropy
decoding that dominates JPEG decode time scales with the compressed bytes. The dataset's mean
file size and pixel count are recorded with every measurement.
"""

from __future__ import annotations

import math
import multiprocessing as mp
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

SIZES = ((500, 500), (500, 375), (375, 500), (500, 333), (333, 500))  # (w, h)
JPEG_QUALITY = 96
CROP = 224
CLASSES = 8
SPECTRUM_EXPONENT = 1.55  # see the module docstring: sets the mean file size near ImageNet's


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


def _worker_loop(files: Sequence[str], backend: str, seed: int, barrier: Any, seconds: float,
                 out: Any) -> None:
    try:
        import torch

        torch.set_num_threads(1)  # as a DataLoader worker
        torch.default_generator.manual_seed(seed)  # CPU generator only: CUDA stays untouched
    except ImportError:
        pass
    fn, _ = make_transform(backend)
    rng = np.random.default_rng(seed)
    i = 0
    for _ in range(4):  # warm the code paths before timing starts
        fn(files[i % len(files)], rng)
        i += 1
    barrier.wait()  # every worker is ready: they run concurrently from here
    start = time.perf_counter()
    done, end = 0, start + seconds
    while time.perf_counter() < end:
        fn(files[i % len(files)], rng)
        i += 1
        done += 1
    out.put((done, time.perf_counter() - start))


def cpu_pipeline_rate(files: Sequence[str], workers: int, seconds: float = 3.0,
                      backend: str = "auto") -> dict[str, float]:
    """Aggregate images/s of ``workers`` processes running the pipeline at once."""
    if workers < 1:
        raise ValueError("workers must be >= 1")
    ctx = mp.get_context("fork")
    q, barrier = ctx.Queue(), ctx.Barrier(workers)
    procs = [ctx.Process(target=_worker_loop,
                         args=(files[w::workers] or files, backend, w, barrier, seconds, q))
             for w in range(workers)]
    for p in procs:
        p.start()
    results = [q.get(timeout=300 + seconds) for _ in procs]
    for p in procs:
        p.join()
    images = sum(r[0] for r in results)
    wall = max(r[1] for r in results)
    return {"images": float(images), "wall_s": wall, "images_per_s": images / wall,
            "per_worker_images_per_s": images / wall / workers}


def gpu_decode_rate(files: Sequence[str], batch: int = 128, repeats: int = 10) -> dict[str, float]:
    """nvJPEG batched decode (``torchvision.io.decode_jpeg(device="cuda")``): images/s."""
    import torch
    from torchvision.io import decode_jpeg

    datas = [torch.frombuffer(bytearray(Path(f).read_bytes()), dtype=torch.uint8)
             for f in files[:batch]]
    for _ in range(2):
        decode_jpeg(datas, device="cuda")
    torch.cuda.synchronize()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        decode_jpeg(datas, device="cuda")
        torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    med = float(np.median(times))
    return {"batch": float(len(datas)), "latency_s": med, "images_per_s": len(datas) / med}


# ---- loader-fed ResNet-50 training ------------------------------------------------------------
class _JpegFolder:
    """ImageFolder-like dataset running the measured transform (picklable for workers)."""

    def __init__(self, files: Sequence[str], backend: str) -> None:
        self.files = list(files)
        self.backend = backend
        self._fn: Callable[[str, np.random.Generator], np.ndarray] | None = None
        self._rng: np.random.Generator | None = None

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> tuple[np.ndarray, int]:
        if self._fn is None:
            self._fn, _ = make_transform(self.backend)
            self._rng = np.random.default_rng(os.getpid())
        assert self._rng is not None
        return self._fn(self.files[i], self._rng), int(Path(self.files[i]).parent.name.split("_")[1])


def _collate_uint8(batch: list[tuple[np.ndarray, int]]) -> tuple[Any, Any]:
    """Stack HWC uint8 images into one NCHW uint8 tensor; normalisation happens on the GPU."""
    import torch

    imgs = torch.from_numpy(np.stack([b[0] for b in batch])).permute(0, 3, 1, 2)
    return imgs, torch.tensor([b[1] for b in batch], dtype=torch.long)


def resnet50_train_rate(files: Sequence[str] | None, workers: int, batch: int = 256,
                        steps: int = 20, warmup: int = 6, dtype: str = "fp16",
                        backend: str = "auto", device: str = "cuda") -> dict[str, float]:
    """Images/s of ResNet-50 mixed-precision training (SGD momentum, channels-last).

    ``files=None`` feeds one synthetic batch kept on the device (the GPU-bound rate);
    otherwise a ``DataLoader`` with ``workers`` processes decodes ``files`` every step.
    ``device="cpu"`` exists for tests (autocast in bf16 there).
    """
    import torch
    import torch.nn.functional as F
    from torchvision.models import resnet50

    dev = torch.device(device)
    cuda = dev.type == "cuda"
    torch.backends.cudnn.benchmark = True
    model = resnet50(weights=None).to(dev, memory_format=torch.channels_last).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    amp = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(dtype)
    if not cuda and amp is not None:
        amp = torch.bfloat16
    scaler = torch.amp.GradScaler(dev.type, enabled=cuda and dtype == "fp16")
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    mean = torch.tensor([0.485, 0.456, 0.406], device=dev).view(1, 3, 1, 1) * 255
    std = torch.tensor([0.229, 0.224, 0.225], device=dev).view(1, 3, 1, 1) * 255

    def step(x_u8: Any, y: Any) -> None:
        x = x_u8.to(dev, non_blocking=True).float().sub_(mean).div_(std)
        x = x.contiguous(memory_format=torch.channels_last)
        opt.zero_grad(set_to_none=True)
        with torch.autocast(dev.type, dtype=amp or torch.float32, enabled=amp is not None):
            loss = F.cross_entropy(model(x).float(), y.to(dev, non_blocking=True))
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()

    if files is None:
        x = torch.randint(0, 256, (batch, 3, CROP, CROP), dtype=torch.uint8, device=dev)
        y = torch.randint(0, 1000, (batch,), device=dev)
        batches: Any = iter(lambda: (x, y), None)
    else:
        from torch.utils.data import DataLoader, RandomSampler

        # Workers each build whole batches, so the first W arrive in a burst: warm up past it
        # and time several rounds of W batches. One long epoch avoids the pipeline draining at
        # epoch ends (with a small synthetic set an epoch would be a few batches).
        warmup = max(warmup, 2 * workers + 2)
        steps = max(steps, 3 * workers)
        ds = _JpegFolder(files, backend)
        sampler = RandomSampler(ds, replacement=True, num_samples=batch * (warmup + steps + 1))
        loader = DataLoader(ds, batch_size=batch, sampler=sampler, num_workers=workers,
                            pin_memory=cuda, drop_last=True, collate_fn=_collate_uint8,
                            prefetch_factor=2 if workers > 0 else None)
        batches = iter(loader)
    for _ in range(warmup):
        step(*next(batches))
    sync()
    t0 = time.perf_counter()
    for _ in range(steps):
        step(*next(batches))
    sync()
    wall = time.perf_counter() - t0
    del batches
    return {"steps": float(steps), "wall_s": wall, "step_s": wall / steps,
            "images_per_s": steps * batch / wall}


# ---- records --------------------------------------------------------------------------------
CPU_WORKERS = {"tiny": (1, 2), "smoke": (1, 2), "standard": (1, 2, 4, 8, 12, 15, 16)}
LOADER_WORKERS = {"tiny": (), "smoke": (2,), "standard": (2, 4, 8, 12, 15)}
DATASET_IMAGES = {"tiny": 16, "smoke": 256, "standard": 1024}


def measure(suite: str, dev: Any, base: Any, data_dir: str | os.PathLike[str],
            done: set[str], emit: Callable[[Any], None], say: Callable[[str], None]) -> int:
    """Measure ``suite``'s input-pipeline cases (skipping keys in ``done``); returns how many ran.

    ``base`` is a :class:`~perfforge.profiling.records.Measurement` carrying the device and
    software metadata; each record copies it and goes to ``emit`` as soon as it is measured.
    Failures are recorded, never raised.
    """
    from dataclasses import replace

    from perfforge.profiling.records import make_key, utc_now_iso

    if suite not in DATASET_IMAGES:
        raise ValueError(f"unknown suite {suite!r} (choose from {', '.join(DATASET_IMAGES)})")
    t0 = time.monotonic()
    stats = synth_jpeg_dataset(Path(data_dir), DATASET_IMAGES[suite])
    files = list_images(data_dir)
    say(f"input: {stats.images} synthetic JPEGs, mean {stats.mean_bytes / 1e3:.0f} kB, "
        f"{stats.mean_pixels / 1e3:.0f} kpixel ({time.monotonic() - t0:.1f}s)")
    _, backend = make_transform("auto")
    seconds = {"tiny": 0.3, "smoke": 1.0, "standard": 3.0}[suite]
    host = {"cpu_count": os.cpu_count(),
            "affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
            "cpu_model": _cpu_model()}
    jobs: list[tuple[str, str, str, dict[str, Any], Callable[[], dict[str, float]]]] = []
    for w in CPU_WORKERS[suite]:
        jobs.append(("input", "jpeg_train_pipeline", "uint8",
                     {"workers": w, "transform": backend, "crop": CROP, **stats.as_params()},
                     lambda w=w: cpu_pipeline_rate(files, w, seconds, backend)))
    cuda = getattr(dev, "type", "cpu") == "cuda"
    if cuda:
        jobs.append(("input", "jpeg_decode_nvjpeg", "uint8", {"batch": 128, **stats.as_params()},
                     lambda: gpu_decode_rate(files, 128)))
        steps = {"tiny": 3, "smoke": 5, "standard": 20}[suite]
        batch = {"tiny": 8, "smoke": 64, "standard": 256}[suite]
        for w in (0, *LOADER_WORKERS[suite]):
            feed = "synthetic_on_device" if w == 0 else "jpeg_dataloader"
            params = {"model": "resnet50", "mode": "train", "batch": batch, "feed": feed,
                      "optimizer": "sgd_momentum", "channels_last": True, "amp": "autocast+gradscaler"}
            if w:
                params.update(workers=w, transform=backend, **stats.as_params())
            jobs.append(("model", "resnet50_train_fed", "fp16", params,
                         lambda w=w, steps=steps, batch=batch: resnet50_train_rate(
                             files if w else None, w, batch=batch, steps=steps)))
    ran = 0
    for kind, op, dtype, params, run in jobs:
        key = make_key(kind, op, dtype, params)
        if key in done:
            say(f"{key}: already measured")
            continue
        rec = replace(base, key=key, kind=kind, op=op, params=params, dtype=dtype, group="input",
                      timer="wall", l2_flush=False, extra={"host": host}, date=utc_now_iso())
        try:
            res = run()
        except Exception as exc:  # noqa: BLE001 - every failure is recorded, never dropped
            rec.error = f"{type(exc).__name__}: {str(exc).strip()[:300]}"
        else:
            rec.throughput_per_s = res["images_per_s"]
            rec.latency_s = res.get("step_s") or res.get("latency_s") or 1.0 / res["images_per_s"]
            rec.repeats = int(res.get("steps", res.get("images", 1)))
            rec.extra.update({k: v for k, v in res.items() if k != "images_per_s"})
        emit(rec)
        ran += 1
        say(f"{key}: " + (rec.error or f"{rec.throughput_per_s:,.0f} images/s"))
    return ran


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or platform.machine()
