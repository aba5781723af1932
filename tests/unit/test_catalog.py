"""The shipped hardware catalog and its loader: every figure sourced, dense vs sparse kept apart,
datasheet spot checks, user catalogs, and one-line errors for bad input."""

from __future__ import annotations

import copy
import importlib.resources
import os
from pathlib import Path
from typing import Any

import pytest
import yaml

from perfforge.core.dtypes import DType
from perfforge.core.errors import ConfigError
from perfforge.system import catalog
from perfforge.system.device import DeviceSpec
from perfforge.system.figures import Figure
from perfforge.system.network import NetworkSpec, NodeSpec

CATALOG_ROOT = importlib.resources.files("perfforge") / "data" / "catalog"


def _shipped_ids(sub: str) -> list[str]:
    """Ids straight from the package data folder, independent of the loader under test."""
    return sorted(e.name[: -len(".yaml")] for e in (CATALOG_ROOT / sub).iterdir() if e.name.endswith(".yaml"))


def _shipped_yaml(sub: str, ident: str) -> dict[str, Any]:
    return yaml.safe_load((CATALOG_ROOT / sub / f"{ident}.yaml").read_text(encoding="utf-8"))


def _figures(spec: Any) -> list[tuple[str, Figure]]:
    """Every Figure of a spec, with its field path."""
    found: list[tuple[str, Figure]] = []
    for name in type(spec).model_fields:
        value = getattr(spec, name)
        if isinstance(value, Figure):
            found.append((name, value))
        elif isinstance(value, dict):
            found.extend((f"{name}.{getattr(k, 'value', k)}", v) for k, v in value.items() if isinstance(v, Figure))
    return found


def _write(path: Path, data: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


@pytest.fixture(autouse=True)
def _clean_catalog(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv(catalog.ENV_VAR, raising=False)
    catalog.clear_cache()
    yield
    catalog.clear_cache()


DEVICE_IDS = _shipped_ids("devices")
NODE_IDS = _shipped_ids("nodes")
NETWORK_IDS = _shipped_ids("networks")

REQUIRED_DEVICES = {
    "v100-sxm2-16gb", "v100-sxm2-32gb", "v100-pcie-16gb", "a100-sxm4-40gb", "a100-sxm4-80gb",
    "a100-pcie-40gb", "a100-pcie-80gb", "h100-sxm5-80gb", "h100-pcie-80gb", "h200-sxm-141gb",
    "l4", "t4", "a10g", "mi250x", "mi300x",
}


# ---- the shipped catalog ---------------------------------------------------------------------
def test_listing_matches_package_files() -> None:
    assert catalog.list_devices() == DEVICE_IDS
    assert catalog.list_nodes() == NODE_IDS
    assert catalog.list_networks() == NETWORK_IDS
    assert REQUIRED_DEVICES <= set(DEVICE_IDS)
    assert {"dgx-a100", "dgx-h100", "hgx-h100", "pcie-a100-8x", "pcie-h100-8x", "dgx-1-v100"} <= set(NODE_IDS)
    assert {"infiniband-hdr", "infiniband-ndr", "ethernet-100g", "ethernet-400g"} <= set(NETWORK_IDS)


def _assert_sourced(spec: Any) -> None:
    figures = _figures(spec)
    assert figures, f"{spec.id}: no figures found"
    for path, fig in figures:
        assert fig.source in spec.sources, f"{spec.id}: {path} cites unknown source '{fig.source}'"
        citation = spec.sources[fig.source].strip()
        assert len(citation) >= 30, f"{spec.id}: {path}: citation '{citation}' is too short to find the number"
        markers = ("http", ".pdf", "table", "section", "'", "std", ".com", "github", "docs")
        assert any(m in citation.lower() for m in markers), f"{spec.id}: {path}: citation '{citation}' lacks a locator"


@pytest.mark.parametrize("ident", DEVICE_IDS)
def test_every_device_loads_and_every_figure_is_sourced(ident: str) -> None:
    spec = catalog.get_device(ident)
    assert isinstance(spec, DeviceSpec)
    assert spec.id == ident
    _assert_sourced(spec)


@pytest.mark.parametrize("ident", NETWORK_IDS)
def test_every_network_loads_and_is_sourced(ident: str) -> None:
    spec = catalog.get_network(ident)
    assert isinstance(spec, NetworkSpec) and spec.id == ident
    _assert_sourced(spec)
    assert 1e9 <= spec.link_bytes_per_s <= 1e12  # 8 Gb/s .. 8 Tb/s per port is the plausible range
    assert 0 < spec.latency_s < 1e-4


@pytest.mark.parametrize("ident", NODE_IDS)
def test_every_node_loads_is_sourced_and_matches_its_device(ident: str) -> None:
    node = catalog.get_node(ident)
    assert isinstance(node, NodeSpec) and node.id == ident
    _assert_sourced(node)
    assert node.config_source in node.sources
    device = catalog.get_device(node.device)
    if node.network is not None:
        catalog.get_network(node.network)
    # The per-direction fabric figure must be half the device's aggregate bidirectional figure.
    if node.fabric_kind in ("nvswitch", "nvlink", "xgmi"):
        expected = device.scale_up_bytes_per_s_per_direction
    else:
        expected = device.pcie_bytes_per_s_per_direction
    assert node.fabric_bytes_per_s == pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize("ident", DEVICE_IDS)
def test_dense_peaks_never_use_sparse_figures(ident: str) -> None:
    spec = catalog.get_device(ident)
    for dtype, sparse in spec.sparse_flops.items():
        dense = spec.peak_flops.get(dtype)
        assert dense is not None, f"{ident}: sparse {dtype.value} listed without a dense peak"
        assert dense.value != sparse.value, f"{ident}: peak {dtype.value} equals the sparse figure"
        assert dense.value <= sparse.value / 1.9, f"{ident}: peak {dtype.value} looks like a sparse rate"


@pytest.mark.parametrize("ident", DEVICE_IDS)
def test_vector_rates_do_not_exceed_matrix_peaks(ident: str) -> None:
    spec = catalog.get_device(ident)
    for dtype, vec in spec.vector_flops.items():
        peak = spec.peak_flops.get(dtype)
        if peak is not None:
            assert vec.value <= peak.value * (1 + 1e-9), f"{ident}: vector {dtype.value} > peak"


@pytest.mark.parametrize(
    ("ident", "field", "expected"),
    [
        ("h100-sxm5-80gb", ("peak_flops", DType.BF16), 989.4e12),
        ("h100-sxm5-80gb", ("sparse_flops", DType.BF16), 1979e12),
        ("h100-sxm5-80gb", "memory_bandwidth", 3.35e12),
        ("h100-sxm5-80gb", "sm_count", 132),
        ("h100-pcie-80gb", ("peak_flops", DType.FP16), 756e12),
        ("h100-pcie-80gb", "memory_bandwidth", 2.0e12),
        ("h200-sxm-141gb", "memory_bandwidth", 4.8e12),
        ("h200-sxm-141gb", "memory_capacity", 141e9),
        ("a100-sxm4-80gb", "memory_bandwidth", 2039e9),
        ("a100-sxm4-80gb", ("peak_flops", DType.BF16), 312e12),
        ("a100-sxm4-40gb", "memory_bandwidth", 1555e9),
        ("a100-pcie-80gb", "memory_bandwidth", 1935e9),
        ("a100-pcie-80gb", "tdp", 300.0),
        ("v100-sxm2-16gb", ("peak_flops", DType.FP16), 125e12),
        ("v100-sxm2-32gb", "memory_capacity", 32e9),
        ("v100-pcie-16gb", ("peak_flops", DType.FP16), 112e12),
        ("t4", "memory_bandwidth", 320e9),
        ("t4", ("peak_flops", DType.FP16), 65e12),
        ("l4", ("peak_flops", DType.FP16), 121e12),
        ("l4", ("sparse_flops", DType.FP8), 485e12),
        ("mi300x", ("peak_flops", DType.FP16), 1307.4e12),
        ("mi300x", "memory_bandwidth", 5.3e12),
        ("mi250x", ("peak_flops", DType.BF16), 383e12),
        ("mi250x", "sm_count", 220),
        ("a10g", "memory_bandwidth", 600e9),
    ],
)
def test_datasheet_spot_checks(ident: str, field: Any, expected: float) -> None:
    spec = catalog.get_device(ident)
    fig = getattr(spec, field[0])[field[1]] if isinstance(field, tuple) else getattr(spec, field)
    assert fig.value == pytest.approx(expected, rel=1e-3)


def test_formats_a_vendor_does_not_give_are_absent() -> None:
    v100 = catalog.get_device("v100-sxm2-16gb")
    assert not {DType.BF16, DType.TF32, DType.FP8} & set(v100.peak_flops)
    t4 = catalog.get_device("t4")
    assert DType.BF16 not in t4.peak_flops and DType.TF32 not in t4.peak_flops
    assert not catalog.get_device("mi300x").sparse_flops  # not verified, so deliberately not shipped


def test_node_presets_spot_checks() -> None:
    dgx_a = catalog.get_node("dgx-a100")
    assert (dgx_a.devices_per_node, dgx_a.nics_per_node, dgx_a.fabric_kind) == (8, 8, "nvswitch")
    assert dgx_a.fabric_bytes_per_s == pytest.approx(300e9)
    assert catalog.get_network(dgx_a.network).link_bytes_per_s == pytest.approx(25e9)  # 200 Gb/s
    dgx_h = catalog.get_node("dgx-h100")
    assert dgx_h.fabric_bytes_per_s == pytest.approx(450e9)
    assert catalog.get_network(dgx_h.network).link_bytes_per_s == pytest.approx(50e9)  # 400 Gb/s
    assert catalog.get_node("pcie-a100-8x").fabric_kind == "pcie"


# ---- user catalogs -------------------------------------------------------------------------
def _my_gpu(ident: str = "my-gpu") -> dict[str, Any]:
    data = _shipped_yaml("devices", "t4")
    data["id"] = ident
    data["name"] = "My GPU"
    data["memory_bandwidth"] = {"value": "1 TB/s", "source": "ds"}
    return data


def test_user_catalog_dir_adds_and_overrides(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _write(tmp_path / "devices" / "my-gpu.yaml", _my_gpu())
    _write(tmp_path / "loose-gpu.yaml", _my_gpu("loose-gpu"))  # device yaml directly in the dir
    override = _shipped_yaml("devices", "t4")
    override["memory_bandwidth"] = {"value": "111 GB/s", "source": "ds"}
    _write(tmp_path / "devices" / "t4.yaml", override)
    node = _shipped_yaml("nodes", "pcie-a100-8x")
    node.update(id="my-box", device="my-gpu", devices_per_node=2)
    _write(tmp_path / "nodes" / "my-box.yaml", node)
    monkeypatch.setenv(catalog.ENV_VAR, str(tmp_path))
    catalog.clear_cache()

    assert catalog.get_device("my-gpu").memory_bandwidth.value == pytest.approx(1e12)
    assert catalog.get_device("loose-gpu").name == "My GPU"
    assert catalog.get_device("t4").memory_bandwidth.value == pytest.approx(111e9)
    assert {"my-gpu", "loose-gpu", "a100-sxm4-80gb"} <= set(catalog.list_devices())
    assert catalog.get_node("my-box").devices_per_node == 2
    assert "my-box" in catalog.list_nodes()


def test_first_user_dir_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first, second = tmp_path / "a", tmp_path / "b"
    a, b = _my_gpu(), _my_gpu()
    a["name"], b["name"] = "first", "second"
    _write(first / "devices" / "my-gpu.yaml", a)
    _write(second / "devices" / "my-gpu.yaml", b)
    monkeypatch.setenv(catalog.ENV_VAR, f"{first}{os.pathsep}{second}")
    catalog.clear_cache()
    assert catalog.get_device("my-gpu").name == "first"


def test_device_by_path(tmp_path: Path) -> None:
    path = _write(tmp_path / "elsewhere" / "my-gpu.yaml", _my_gpu())
    assert catalog.get_device(str(path)).id == "my-gpu"
    assert catalog.load_device(path).memory_bandwidth.value == pytest.approx(1e12)
    assert "my-gpu" not in catalog.list_devices()  # a path does not register the id


# ---- bad input -------------------------------------------------------------------------------
def _error(call) -> str:
    with pytest.raises(ConfigError) as info:
        call()
    message = str(info.value)
    assert "\n" not in message, f"error message spans lines: {message!r}"
    return message


def test_missing_source_names_file_and_field(tmp_path: Path) -> None:
    data = _my_gpu()
    data["memory_bandwidth"] = {"value": "1 TB/s"}
    path = _write(tmp_path / "my-gpu.yaml", data)
    msg = _error(lambda: catalog.load_device(path))
    assert msg.startswith("my-gpu.yaml: ")
    assert "memory_bandwidth" in msg and "'value' and 'source'" in msg


def test_source_key_must_be_listed(tmp_path: Path) -> None:
    data = _my_gpu()
    data["tdp"] = {"value": "70 W", "source": "nowhere"}
    msg = _error(lambda: catalog.load_device(_write(tmp_path / "my-gpu.yaml", data)))
    assert "tdp" in msg and "'nowhere'" in msg


def test_unknown_key_lists_allowed(tmp_path: Path) -> None:
    data = _my_gpu()
    data["memory_bandwith"] = {"value": "1 TB/s", "source": "ds"}
    msg = _error(lambda: catalog.load_device(_write(tmp_path / "my-gpu.yaml", data)))
    assert "memory_bandwith" in msg and "unknown key" in msg and "memory_bandwidth" in msg


def test_unknown_dtype_lists_allowed(tmp_path: Path) -> None:
    data = _my_gpu()
    data["peak_flops"]["fp4"] = {"value": "1 PFLOPS", "source": "ds"}
    msg = _error(lambda: catalog.load_device(_write(tmp_path / "my-gpu.yaml", data)))
    assert "fp4" in msg and "allowed" in msg and "bf16" in msg


def test_unknown_hardware_suggests() -> None:
    msg = _error(lambda: catalog.get_device("a100-sxm"))
    assert "unknown hardware 'a100-sxm'" in msg and "did you mean 'a100-sxm4-80gb'" in msg and "known:" in msg
    assert "unknown node 'dgx-a10'" in _error(lambda: catalog.get_node("dgx-a10"))
    assert "did you mean 'infiniband-hdr'" in _error(lambda: catalog.get_network("infiniband-hd"))


def test_negative_bandwidths_rejected(tmp_path: Path) -> None:
    data = _my_gpu()
    data["memory_bandwidth"] = {"value": "-300 GB/s", "source": "ds"}
    msg = _error(lambda: catalog.load_device(_write(tmp_path / "my-gpu.yaml", data)))
    assert "memory_bandwidth must be > 0" in msg

    net = copy.deepcopy(_shipped_yaml("networks", "infiniband-hdr"))
    net.update(id="slow-net", link_bandwidth={"value": "-200 Gb/s", "source": "cx6"})
    msg = _error(lambda: catalog.load_network(_write(tmp_path / "slow-net.yaml", net)))
    assert msg.startswith("slow-net.yaml: ") and "link_bandwidth must be > 0" in msg

    node = _shipped_yaml("nodes", "dgx-a100")
    node.update(id="neg-node", fabric_bandwidth={"value": "-1 GB/s", "source": "a100"})
    msg = _error(lambda: catalog.load_node(_write(tmp_path / "neg-node.yaml", node)))
    assert "fabric_bandwidth must be > 0" in msg


def test_node_field_errors(tmp_path: Path) -> None:
    node = _shipped_yaml("nodes", "dgx-a100")
    node.update(id="odd", fabric_kind="infinity-band")
    msg = _error(lambda: catalog.load_node(_write(tmp_path / "odd.yaml", node)))
    assert "fabric_kind" in msg and "nvswitch" in msg and "pcie" in msg

    node = _shipped_yaml("nodes", "dgx-a100")
    node.update(id="ghost", device="a100-sxm")
    msg = _error(lambda: catalog.load_node(_write(tmp_path / "ghost.yaml", node)))
    assert msg.startswith("ghost.yaml: device: unknown hardware 'a100-sxm'")

    node = _shipped_yaml("nodes", "dgx-a100")
    node.update(id="zero", devices_per_node=0)
    assert "devices_per_node must be >= 1" in _error(lambda: catalog.load_node(_write(tmp_path / "zero.yaml", node)))


def test_malformed_yaml_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("id: broken\nname: [unclosed\nvendor: x\n", encoding="utf-8")
    msg = _error(lambda: catalog.load_device(path))
    assert msg.startswith("broken.yaml: malformed YAML at line ")


def test_id_must_match_file_stem(tmp_path: Path) -> None:
    path = _write(tmp_path / "other-name.yaml", _my_gpu())
    msg = _error(lambda: catalog.load_device(path))
    assert "other-name.yaml" in msg and "'my-gpu'" in msg and "stem 'other-name'" in msg


def test_missing_file_and_bad_catalog_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert "does not exist" in _error(lambda: catalog.get_device(str(tmp_path / "nope.yaml")))
    monkeypatch.setenv(catalog.ENV_VAR, str(tmp_path / "not-there"))
    catalog.clear_cache()
    msg = _error(catalog.list_devices)
    assert catalog.ENV_VAR in msg and "not a directory" in msg
