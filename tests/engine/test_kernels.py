"""The dense layers' products: oneDNN for CPU inference, ``F.linear`` otherwise, same numbers."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch
import torch.nn.functional as F

from cumx_cli.engine.model import kernels
from cumx_cli.engine.model.kernels import linear, onednn_linear


@pytest.fixture
def fresh_check() -> Iterator[None]:
    """Run the first-use check again (its answer is cached per process)."""
    onednn_linear.cache_clear()
    yield
    onednn_linear.cache_clear()


# Open-Unmix's three layers (fc1 over 1487 bins x 2 channels, fc2, fc3 to 2049 bins x 2).
SHAPES = [(2974, 512), (1024, 512), (512, 4098)]


@pytest.mark.parametrize(("inputs", "outputs"), SHAPES)
def test_inference_on_a_cpu_takes_onednn_with_linear_s_numbers(inputs: int, outputs: int) -> None:
    generator = torch.Generator().manual_seed(inputs)
    x = torch.randn(300, inputs, generator=generator)
    w = torch.randn(outputs, inputs, generator=generator) / inputs**0.5
    with torch.inference_mode():
        got = linear(x, w)
        onednn = torch.ops.mkldnn._linear_pointwise(x, w, None, "none", [], "")
    assert onednn_linear()  # the development and CI machines have oneDNN's kernels
    assert torch.equal(got, onednn)  # the oneDNN op itself gave these numbers
    torch.testing.assert_close(got, F.linear(x, w), rtol=1e-5, atol=1e-5)


def test_strided_rows_are_made_contiguous_first() -> None:
    x = torch.randn(64, 40).t()  # (40, 64), not contiguous
    w = torch.randn(8, 64)
    with torch.no_grad():
        torch.testing.assert_close(linear(x, w), F.linear(x, w), rtol=1e-5, atol=1e-5)


def test_with_gradients_it_is_f_linear_and_differentiable() -> None:
    x = torch.randn(16, 12, requires_grad=True)
    w = torch.randn(5, 12, requires_grad=True)
    y = linear(x, w)
    assert torch.equal(y, F.linear(x, w))
    y.sum().backward()
    assert x.grad is not None and w.grad is not None
    torch.testing.assert_close(w.grad, x.detach().sum(dim=0).expand(5, 12))


def test_other_dtypes_use_f_linear() -> None:
    x = torch.randn(16, 12, dtype=torch.float64)
    w = torch.randn(5, 12, dtype=torch.float64)
    with torch.no_grad():
        assert torch.equal(linear(x, w), F.linear(x, w))


def test_without_the_check_passing_it_is_f_linear(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(kernels, "onednn_linear", lambda: False)
    x, w = torch.randn(30, 70), torch.randn(19, 70)
    with torch.no_grad():
        assert torch.equal(linear(x, w), F.linear(x, w))


def test_the_check_fails_without_onednn(monkeypatch: pytest.MonkeyPatch, fresh_check: None) -> None:
    monkeypatch.setattr(torch.backends.mkldnn, "is_available", lambda: False)
    assert onednn_linear() is False


def test_the_check_fails_when_the_op_is_missing_or_wrong(monkeypatch: pytest.MonkeyPatch,
                                                         fresh_check: None) -> None:
    class NoOps:
        def __getattr__(self, name: str) -> object:
            raise AttributeError(name)

    monkeypatch.setattr(torch.ops, "mkldnn", NoOps())
    assert onednn_linear() is False
    onednn_linear.cache_clear()

    class WrongOps:
        @staticmethod
        def _linear_pointwise(x: torch.Tensor, w: torch.Tensor, *_: object) -> torch.Tensor:
            return F.linear(x, w) * 1.01

    monkeypatch.setattr(torch.ops, "mkldnn", WrongOps())
    assert onednn_linear() is False
