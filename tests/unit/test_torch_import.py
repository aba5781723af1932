"""PyTorch modules traced on the meta device give the same graph totals as the zoo."""

from collections import Counter

import pytest

torch = pytest.importorskip("torch", reason="the torch importer needs the optional torch extra")
nn = torch.nn
F = torch.nn.functional

import perfforge  # noqa: E402
from perfforge.workload.op import OpKind  # noqa: E402
from perfforge.workload.zoo import get_model  # noqa: E402


class Bottleneck(nn.Module):
    """torchvision ResNet v1.5 bottleneck, written out so the test needs no torchvision."""

    def __init__(self, cin: int, width: int, stride: int, downsample: bool) -> None:
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(cin, width, 1, bias=False), nn.BatchNorm2d(width)
        self.conv2, self.bn2 = nn.Conv2d(width, width, 3, stride, 1, bias=False), nn.BatchNorm2d(width)
        self.conv3, self.bn3 = nn.Conv2d(width, width * 4, 1, bias=False), nn.BatchNorm2d(width * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = (nn.Sequential(nn.Conv2d(cin, width * 4, 1, stride, bias=False), nn.BatchNorm2d(width * 4))
                           if downsample else None)

    def forward(self, x):
        identity = self.downsample(x) if self.downsample is not None else x
        y = self.relu(self.bn1(self.conv1(x)))
        y = self.relu(self.bn2(self.conv2(y)))
        return self.relu(self.bn3(self.conv3(y)) + identity)


class ResNet50(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64)
        self.relu, self.maxpool = nn.ReLU(inplace=True), nn.MaxPool2d(3, 2, 1)
        blocks, cin = [], 64
        for stage, (width, depth) in enumerate(zip((64, 128, 256, 512), (3, 4, 6, 3))):
            for i in range(depth):
                blocks.append(Bottleneck(cin, width, 2 if (i == 0 and stage > 0) else 1, i == 0))
                cin = width * 4
        self.layers = nn.Sequential(*blocks)
        self.avgpool, self.fc = nn.AdaptiveAvgPool2d(1), nn.Linear(2048, 1000)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        return self.fc(torch.flatten(self.avgpool(self.layers(x)), 1))


class GPT2Block(nn.Module):
    def __init__(self, h: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.ln_1, self.ln_2 = nn.LayerNorm(h), nn.LayerNorm(h)
        self.c_attn, self.c_proj = nn.Linear(h, 3 * h), nn.Linear(h, h)
        self.c_fc, self.mlp_proj = nn.Linear(h, 4 * h), nn.Linear(4 * h, h)

    def forward(self, x):
        b, s, h = x.shape
        q, k, v = self.c_attn(self.ln_1(x)).split(h, dim=2)
        q, k, v = (t.view(b, s, self.heads, h // self.heads).transpose(1, 2) for t in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(1, 2).reshape(b, s, h)
        x = x + self.c_proj(y)
        return x + self.mlp_proj(F.gelu(self.c_fc(self.ln_2(x)), approximate="tanh"))


class GPT2(nn.Module):
    def __init__(self, layers=12, h=768, heads=12, vocab=50257, positions=1024) -> None:
        super().__init__()
        self.wte, self.wpe = nn.Embedding(vocab, h), nn.Embedding(positions, h)
        self.blocks = nn.ModuleList(GPT2Block(h, heads) for _ in range(layers))
        self.ln_f = nn.LayerNorm(h)
        self.lm_head = nn.Linear(h, vocab, bias=False)
        self.lm_head.weight = self.wte.weight  # tied

    def forward(self, idx):
        pos = torch.arange(idx.shape[1], device=idx.device)
        x = self.wte(idx) + self.wpe(pos)
        for blk in self.blocks:
            x = blk(x)
        return self.lm_head(self.ln_f(x))


def _matrix_flops(w):
    return sum(op.flops for op in w.ops if op.kind in (OpKind.MATMUL, OpKind.CONV2D, OpKind.ATTENTION, OpKind.BMM))


def test_resnet50_matches_zoo():
    with torch.device("meta"):
        model = ResNet50()
    traced = perfforge.from_torch(model, torch.empty(4, 3, 224, 224, device="meta"), name="resnet50")
    zoo = get_model("resnet50", batch=4, dtype="fp32")
    assert traced.params == zoo.params == 25_557_032
    assert traced.meta["unmodelled"] == []
    assert _matrix_flops(traced) == pytest.approx(_matrix_flops(zoo))
    assert Counter(op.kind for op in traced.ops) == Counter(op.kind for op in zoo.ops)
    assert traced.forward_flops == pytest.approx(zoo.forward_flops, rel=1e-6)


def test_gpt2_matches_zoo_without_weights():
    with torch.device("meta"):
        model = GPT2()
    idx = torch.zeros(2, 256, dtype=torch.long, device="meta")
    traced = perfforge.from_torch(model, idx, name="gpt2", dtype="fp32")
    zoo = get_model("gpt2", batch=2, seq=256, dtype="fp32")
    assert traced.params == zoo.params == 124_439_808
    assert _matrix_flops(traced) == pytest.approx(_matrix_flops(zoo))
    kinds = Counter(op.kind for op in traced.ops)
    assert kinds[OpKind.ATTENTION] == 12 and kinds[OpKind.LAYER_NORM] == 25


def test_real_weights_are_left_untouched():
    model = nn.Sequential(nn.Linear(8, 4), nn.ReLU())
    before = model[0].weight.detach().clone()
    w = perfforge.from_torch(model, torch.randn(3, 8))
    assert w.params == 8 * 4 + 4
    assert model[0].weight.device.type == "cpu" and torch.equal(model[0].weight, before)


def test_rejects_non_module():
    with pytest.raises(perfforge.core.errors.ConfigError, match="nn.Module"):
        perfforge.from_torch(lambda x: x, torch.zeros(1))


class _Copies(nn.Module):
    """A linear layer whose bf16 output is upcast (HF's `logits.float()`) and made contiguous after a transpose."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(32, 64)

    def forward(self, x):
        y = self.fc(x).float()
        return y.transpose(0, 1).contiguous()


def test_traced_copies_price_their_dtypes_and_backward():
    """A dtype-changing copy reads at its source's width and its backward casts the gradient back (read 4 bytes,
    write 2 per element); a same-dtype copy (contiguous) has no backward kernel, as in autograd."""
    from perfforge.workload.backward import backward_ops

    w = perfforge.from_torch(_Copies(), torch.randn(8, 32), dtype="bf16")
    copies = [o for o in w.ops if o.attrs.get("fn") == "copy"]
    assert len(copies) == 2
    upcast, contiguous = copies
    n = 8 * 64
    assert (upcast.bytes_read, upcast.bytes_written) == (2 * n, 4 * n) and upcast.attrs["cast_of"] == "activation"
    (bwd,) = backward_ops(upcast)
    assert (bwd.bytes_read, bwd.bytes_written) == (4 * n, 2 * n)
    assert contiguous.attrs["grad_passthrough"] and backward_ops(contiguous) == []
