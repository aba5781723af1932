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

The JPEGs are synthetic, sized and encoded like ImageNet's (``perfforge.profiling.jpegs``).
"""

from __future__ import annotations

import multiprocessing as mp
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from perfforge.profiling.jpegs import CROP, list_images, make_transform, synth_jpeg_dataset


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
    from perfforge.profiling.runner import cpu_model_name

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
            "cpu_model": cpu_model_name()}
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

