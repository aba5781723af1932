"""Request streams for serving simulation: arrival processes, length distributions and trace files.

A ``RequestSet`` is three aligned numpy arrays (arrival time in s, prompt tokens, output tokens), sorted by
arrival. Generators follow the semantics of Vidur 0.0.26's request generators (``vidur/request_generator/``):
lengths are drawn as a total token count split by a prefill-to-decode ratio, gamma arrivals have shape
``1/cv^2``. Two documented differences: Poisson gaps are not truncated (Vidur caps each gap at 3/qps, which
raises the effective rate by about 5%), and every stream comes from one numpy ``Generator`` seeded once.
"""

from __future__ import annotations

import csv
import gzip
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from perfforge.core.errors import ConfigError

ARRIVALS = ("poisson", "gamma", "static")
LENGTHS = ("fixed", "uniform", "zipf", "trace")


@dataclass(frozen=True)
class RequestSet:
    arrival_s: np.ndarray   # float64, sorted ascending
    prefill: np.ndarray     # int64 prompt tokens, >= 1
    decode: np.ndarray      # int64 output tokens, >= 1 (the first comes out of the prefill)

    def __post_init__(self) -> None:
        n = len(self.arrival_s)
        if not (len(self.prefill) == len(self.decode) == n):
            raise ConfigError("arrival, prefill and decode arrays must have the same length")
        if n == 0:
            raise ConfigError("the request set is empty")
        if (self.prefill < 1).any() or (self.decode < 1).any():
            raise ConfigError("every request needs at least 1 prompt token and 1 output token")
        if (np.diff(self.arrival_s) < 0).any():
            raise ConfigError("requests must be sorted by arrival time")

    def __len__(self) -> int:
        return len(self.arrival_s)

    @property
    def total_tokens(self) -> np.ndarray:
        return self.prefill + self.decode

    def write_csv(self, path: str | Path) -> None:
        """The trace format perfforge and Vidur's processed traces share: arrived_at, prefill, decode."""
        from perfforge.core.files import write_atomic

        lines = ["arrived_at,num_prefill_tokens,num_decode_tokens"]
        lines += [f"{a:.9f},{p},{d}" for a, p, d in zip(self.arrival_s.tolist(), self.prefill.tolist(),
                                                         self.decode.tolist())]
        write_atomic(Path(path), "\n".join(lines) + "\n")


def _arrivals(kind: str, n: int, qps: float, cv: float, rng: np.random.Generator) -> np.ndarray:
    if kind == "static":
        return np.zeros(n)
    if qps <= 0:
        raise ConfigError(f"qps must be > 0 for {kind} arrivals, got {qps}")
    if kind == "poisson":
        gaps = rng.exponential(1.0 / qps, n)
    elif kind == "gamma":
        if cv <= 0:
            raise ConfigError(f"cv must be > 0 for gamma arrivals, got {cv}")
        shape = 1.0 / cv**2
        gaps = rng.gamma(shape, 1.0 / (qps * shape), n)
    else:
        raise ConfigError(f"unknown arrival process '{kind}' (allowed: {', '.join(ARRIVALS)})")
    return np.cumsum(gaps)


def _split(total: np.ndarray, pd_ratio: float) -> tuple[np.ndarray, np.ndarray]:
    if pd_ratio <= 0:
        raise ConfigError(f"prefill_to_decode_ratio must be > 0, got {pd_ratio}")
    decode = np.ceil(total / (1.0 + pd_ratio)).astype(np.int64)
    prefill = np.maximum(total.astype(np.int64) - decode, 1)
    return prefill, np.maximum(decode, 1)


def _zipf_totals(n: int, lo: int, hi: int, theta: float, rng: np.random.Generator) -> np.ndarray:
    """Bounded Zipf over [lo, hi]: P(k) ~ 1/rank^theta, rank 1 = the shortest length."""
    ranks = np.arange(1, hi - lo + 2, dtype=np.float64)
    p = ranks ** -theta
    return lo + rng.choice(len(ranks), size=n, p=p / p.sum())


def read_trace(path: str | Path, *, max_tokens: int | None = None) -> tuple[np.ndarray | None, np.ndarray, np.ndarray]:
    """A CSV (plain or .gz) with ``num_prefill_tokens`` and ``num_decode_tokens`` columns and optionally
    ``arrived_at`` (s): Vidur's processed-trace format. Returns (arrivals or None, prefill, decode).
    Requests longer than ``max_tokens`` lose prompt tokens, as Vidur trims them."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"trace file not found: {p}")
    opener = gzip.open if p.suffix == ".gz" else open
    with opener(p, "rt", newline="") as fh:
        reader = csv.DictReader(fh)
        cols = set(reader.fieldnames or ())
        need = {"num_prefill_tokens", "num_decode_tokens"}
        if not need <= cols:
            raise ConfigError(f"{p}: a trace needs the columns {sorted(need)} (and optionally arrived_at); "
                              f"found {sorted(cols)}")
        rows = list(reader)
    if not rows:
        raise ConfigError(f"{p}: the trace has no rows")
    try:
        prefill = np.maximum(np.array([float(r["num_prefill_tokens"]) for r in rows]).astype(np.int64), 1)
        decode = np.maximum(np.array([float(r["num_decode_tokens"]) for r in rows]).astype(np.int64), 1)
        arrivals = np.array([float(r["arrived_at"]) for r in rows]) if "arrived_at" in cols else None
    except ValueError as exc:
        raise ConfigError(f"{p}: non-numeric value in the trace ({exc})") from None
    if max_tokens is not None:
        over = np.maximum(prefill + decode - max_tokens, 0)
        prefill = np.maximum(prefill - over, 1)
    return arrivals, prefill, decode


def generate(*, requests: int, arrival: str = "poisson", qps: float = 1.0, cv: float = 1.0,
             length: str = "fixed", prefill: int = 512, decode: int = 128, min_tokens: int = 1024,
             max_tokens: int = 4096, prefill_to_decode_ratio: float = 20.0, zipf_theta: float = 0.6,
             trace: str | Path | None = None, seed: int = 42) -> RequestSet:
    """Draw ``requests`` requests. With ``trace`` and ``length='trace'``, lengths are drawn from the trace's
    rows; a trace with ``arrived_at`` and ``arrival='trace'`` is replayed as is (first ``requests`` rows)."""
    if requests < 1:
        raise ConfigError(f"requests must be >= 1, got {requests}")
    rng = np.random.default_rng(seed)
    if arrival == "trace" or length == "trace":
        if trace is None:
            raise ConfigError("arrival or length 'trace' needs a trace file (--trace FILE)")
        t_arr, t_pre, t_dec = read_trace(trace, max_tokens=max_tokens)
    if arrival == "trace":
        if t_arr is None:
            raise ConfigError(f"{trace}: no arrived_at column; use --arrival poisson|gamma|static with this trace")
        n = min(requests, len(t_arr))
        order = np.argsort(t_arr[:n], kind="stable")
        return RequestSet(t_arr[:n][order] - t_arr[:n].min(), t_pre[:n][order], t_dec[:n][order])
    arrivals = _arrivals(arrival, requests, qps, cv, rng)
    if length == "fixed":
        if prefill < 1 or decode < 1:
            raise ConfigError(f"prefill and decode must be >= 1 (got {prefill}, {decode})")
        pre = np.full(requests, prefill, dtype=np.int64)
        dec = np.full(requests, decode, dtype=np.int64)
    elif length in ("uniform", "zipf"):
        if not 2 <= min_tokens <= max_tokens:
            raise ConfigError(f"need 2 <= min_tokens <= max_tokens (got {min_tokens}, {max_tokens})")
        totals = (rng.integers(min_tokens, max_tokens + 1, requests) if length == "uniform"
                  else _zipf_totals(requests, min_tokens, max_tokens, zipf_theta, rng))
        pre, dec = _split(totals, prefill_to_decode_ratio)
    elif length == "trace":
        idx = rng.integers(0, len(t_pre), requests)
        pre, dec = t_pre[idx], t_dec[idx]
    else:
        raise ConfigError(f"unknown length distribution '{length}' (allowed: {', '.join(LENGTHS)})")
    return RequestSet(arrivals, pre, dec)
