import pytest

from perfforge.core.dtypes import DType
from perfforge.core.errors import ConfigError, RegistryError
from perfforge.core.registry import Registry
from perfforge.core.units import parse


@pytest.mark.parametrize(
    "text,to,expected",
    [
        ("3.35 TB/s", "bytes/s", 3.35e12),
        ("2039 GB/s", "bytes/s", 2.039e12),
        ("80 GB", "bytes", 80e9),
        ("80 GiB", "bytes", 80 * 2**30),  # binary only when spelled GiB
        ("989.4 TFLOPS", "FLOP/s", 989.4e12),
        ("624 TOPS", "FLOP/s", 624e12),
        ("400 Gb/s", "bytes/s", 50e9),  # bits: 400e9 / 8
        ("1410 MHz", "Hz", 1.41e9),
        ("5 us", "s", 5e-6),
        (12, "bytes", 12.0),
    ],
)
def test_parse(text, to, expected):
    assert parse(text, to) == pytest.approx(expected)


@pytest.mark.parametrize("text,to", [("3 TB/s", "bytes"), ("fast", "bytes/s"), ("12 parsecs", "s")])
def test_parse_rejects(text, to):
    with pytest.raises(ConfigError):
        parse(text, to)


def test_dtype_aliases_and_errors():
    assert DType.parse("bfloat16") is DType.BF16
    assert DType.parse("FP16").bytes == 2
    with pytest.raises(ConfigError, match="allowed: fp64, fp32"):
        DType.parse("fp12")


def test_registry_is_loud():
    reg: Registry[int] = Registry("thing")
    reg.add("alpha", 1)
    with pytest.raises(RegistryError, match="already registered"):
        reg.add("alpha", 2)
    with pytest.raises(RegistryError, match="did you mean 'alpha'"):
        reg.get("alpah")
