"""DLCL (dynamic linear combination of layers): starts as the running average of the kept
layer outputs, learns its weights, and decodes incrementally exactly as in one full pass."""
import pytest
import torch

from paragen.errors import ConfigError
from paragen.exporting.ctranslate2 import check_exportable
from paragen.models import Seq2Seq
from paragen.modules.dlcl import LayerCombination, run_layers

PAD = 0


def deep_model(dlcl: bool, pre_norm: bool = True) -> Seq2Seq:
    torch.manual_seed(0)
    layer = {"num_heads": 2, "ffn_dim": 32, "dropout": 0.0, "pre_norm": pre_norm, "dlcl": dlcl}
    return Seq2Seq(encoder={"class": "TransformerEncoder", "num_layers": 4, **layer},
                   decoder={"class": "TransformerDecoder", "num_layers": 3, **layer},
                   d_model=16, share_embedding="all", src_vocab_size=30, tgt_vocab_size=30,
                   pad_id=PAD).eval()


def test_combination_starts_as_the_running_average():
    combination = LayerCombination(num_layers=3, d_model=4)
    for norm in combination.norms:  # identity norms, so the arithmetic is visible
        norm.weight.data.fill_(1.0)
    seen = []

    def step(i, h):
        seen.append(h)
        return torch.full_like(h, float(i + 1)) * torch.tensor([1.0, -1.0, 1.0, -1.0])

    x = torch.tensor([[2.0, -2.0, 2.0, -2.0]])
    out = combination(x, 3, step)
    # every kept output normalises to ±1, so each average of them is ±1 again
    assert all(torch.allclose(h, torch.tensor([[1.0, -1.0, 1.0, -1.0]]), atol=1e-4)
               for h in seen)
    assert torch.allclose(out, seen[0], atol=1e-4)
    expected = torch.tensor([[1, 0, 0, 0], [1 / 2, 1 / 2, 0, 0], [1 / 3, 1 / 3, 1 / 3, 0],
                             [1 / 4, 1 / 4, 1 / 4, 1 / 4]])
    assert torch.allclose(combination.weights.data, expected)
    assert torch.equal(run_layers(x, 2, lambda i, h: h * 3), x * 9)  # without DLCL: chained


def test_weights_get_gradients_below_the_diagonal_only():
    model = deep_model(dlcl=True)
    src = torch.randint(3, 30, (2, 5))
    prev = torch.randint(3, 30, (2, 4))
    model.train()
    model(src, prev)["logits"].log_softmax(-1)[..., 5].sum().backward()
    for stack in (model.encoder, model.decoder):
        grad = stack.dlcl.weights.grad
        assert grad is not None and grad.abs().sum() > 0
        assert torch.all(grad[~stack.dlcl.allowed] == 0)  # the future stays out of reach
    assert sum(p.numel() for p in model.parameters()) > \
        sum(p.numel() for p in deep_model(dlcl=False).parameters())


@pytest.mark.parametrize("pre_norm", [True, False])
def test_cached_steps_equal_one_full_pass(pre_norm):
    model = deep_model(dlcl=True, pre_norm=pre_norm)
    src = torch.randint(3, 30, (2, 6))
    prev = torch.randint(3, 30, (2, 5))
    with torch.no_grad():
        memory, padding = model.encoder(src)
        full = model.decoder(prev, memory, padding)
        cache = model.decoder.init_cache()
        steps = [model.decoder(prev[:, t:t + 1], memory, padding, cache=cache)
                 for t in range(prev.size(1))]
    assert torch.allclose(torch.cat(steps, dim=1), full, atol=1e-5)


def test_ctranslate2_export_refuses_dlcl():
    with pytest.raises(ConfigError, match="no dynamic layer combination"):
        check_exportable(deep_model(dlcl=True), "runs/deep")
    check_exportable(deep_model(dlcl=False), "runs/plain")
