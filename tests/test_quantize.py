"""The quantizer that training uses (torch) and the one the writer uses (numpy) are one: the
same integers for the same values and steps, ties and clipping included."""

import numpy as np
import torch

from dnerv_codec.coding.quantize import MAX_SYMBOL, noisy, straight_through, symbols
from dnerv_codec.coding.rate import FlatTensors, flat_bits, laplace_bits, tensor_bits
from dnerv_codec.coding.compress import learned_step_quantize


def test_torch_and_numpy_give_the_same_integers():
    rng = np.random.default_rng(0)
    x = rng.normal(0, 0.05, 100_000).astype(np.float32)
    for step in (np.float32(1e-3), np.float32(0.0123), np.float32(0.3)):
        ours = symbols(x, step)
        theirs = symbols(torch.from_numpy(x), torch.tensor(step)).numpy()
        assert ours.dtype == np.int32
        assert np.array_equal(ours, theirs.astype(np.int32))


def test_ties_round_to_even_on_both_sides():
    step = np.float32(0.5)
    x = np.array([-1.25, -0.75, -0.25, 0.25, 0.75, 1.25], np.float32)  # exactly k + 1/2 steps
    expected = np.array([-2, -2, 0, 0, 2, 2])
    assert np.array_equal(symbols(x, step), expected)
    assert np.array_equal(symbols(torch.from_numpy(x), torch.tensor(step)).numpy(), expected)


def test_symbols_are_clipped_to_what_the_format_holds():
    x = np.array([1e9, -1e9, 0.0], np.float32)
    assert symbols(x, np.float32(1.0)).tolist() == [MAX_SYMBOL, -MAX_SYMBOL, 0]
    assert symbols(torch.from_numpy(x), torch.tensor(1.0)).tolist() == [MAX_SYMBOL, -MAX_SYMBOL, 0]


def test_the_writer_stores_what_straight_through_training_saw():
    """A weight trained on the grid is the value the decoder rebuilds, bit for bit."""
    rng = np.random.default_rng(1)
    w = torch.from_numpy(rng.normal(0, 0.1, (8, 4, 3, 3)).astype(np.float32))
    step = torch.tensor(0.02)
    seen = (straight_through(w, step) * step).detach().numpy()
    stored = learned_step_quantize([("w", w.numpy())], np.array([0.02]), 1.0)[0]
    assert np.array_equal(stored.dequantize(), seen)


def test_straight_through_passes_gradients_to_weights_and_step():
    w = torch.tensor([0.26, -0.74, 0.1], requires_grad=True)
    step = torch.tensor(0.5, requires_grad=True)
    (straight_through(w, step) * step).sum().backward()
    assert torch.allclose(w.grad, torch.ones(3))
    assert step.grad is not None and step.grad.item() != 0


def test_noise_spans_one_step():
    w = torch.zeros(10_000)
    y = noisy(w, torch.tensor(2.0), torch.Generator().manual_seed(0))
    assert -0.5 <= y.min() < -0.45 and 0.45 < y.max() <= 0.5


def test_laplace_bits_are_a_distribution_and_match_its_entropy():
    """Summed over all integers, 2^-bits is 1; and the mean charge on Laplace samples is the
    discretized Laplace's entropy, which the geometric model codes at."""
    y = torch.arange(-400, 401).float()
    for scale in (0.2, 1.0, 5.0, 30.0):
        p = 2.0 ** -laplace_bits(y, torch.tensor(scale))
        assert abs(p.sum().item() - 1.0) < 1e-4
    rng = np.random.default_rng(2)
    w = torch.from_numpy(rng.laplace(0, 3.0, 200_000).astype(np.float32))
    q = torch.round(w)
    bits = tensor_bits(w, q, torch.tensor(1.0)).item() / w.numel()
    counts = np.unique(q.numpy(), return_counts=True)[1] / w.numel()
    entropy = float(-(counts * np.log2(counts)).sum())
    assert abs(bits - entropy) < 0.02


def test_flat_bits_charge_what_tensor_bits_charge_one_by_one_with_the_same_gradients():
    """Training charges all tensors in one pass (rate.FlatTensors); it must be the per-tensor
    sum, gradients included, for tensors of different shapes, scales and steps."""
    gen = torch.Generator().manual_seed(3)
    shapes = [(4, 3, 3, 3), (4,), (2, 4, 1, 1), (7,)]
    weights = [(torch.randn(s, generator=gen) * (k + 1)).requires_grad_() for k, s in enumerate(shapes)]
    steps = torch.tensor([0.05, 0.2, 0.01, 1.0], requires_grad=True)

    def per_tensor():
        return sum(tensor_bits(w, w / s + 0.1, s) for w, s in zip(weights, steps))

    def flat():
        f = FlatTensors([w.shape for w in weights], torch.device("cpu"))
        w = f.flatten(weights)
        step = f.spread(steps)
        bits = flat_bits(f, w, w / step + 0.1, steps)
        assert [p.shape for p in f.split(w)] == [w.shape for w in weights]
        return bits

    grads = []
    for charge in (per_tensor, flat):
        for t in weights + [steps]:
            t.grad = None
        bits = charge()
        bits.backward()
        grads.append((bits.item(), [t.grad.clone() for t in weights + [steps]]))
    assert abs(grads[0][0] - grads[1][0]) < 1e-3 * grads[0][0]
    for a, b in zip(grads[0][1], grads[1][1]):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-6)


def test_embedding_steps_leave_the_least_error_and_clip_rare_outliers():
    """A channel of small values with one outlier: the step that spans the outlier leaves the
    rest a few levels at 5 bits; the chosen step is finer, clips the outlier, and leaves less
    squared error than max |x| would. A channel without outliers keeps a step near max |x|."""
    from dnerv_codec.coding.compress import EMBED_STEP_FRACTIONS, step_quantize, step_quantize_embeddings
    rng = np.random.default_rng(0)
    x = rng.normal(0, 1, (64, 2, 8, 8)).astype(np.float32)
    x[:, 1] = rng.uniform(-1, 1, (64, 8, 8))   # no tails: the full range is used
    x[3, 0, 1, 2] = 8.0                         # one outlier among 4,096 values of channel 0
    chosen = step_quantize_embeddings(x, 5)
    plain = step_quantize(x, 5, 1)
    assert chosen.step_axis == 1 and chosen.temporal and chosen.channel_axis == 1
    assert chosen.step[0] <= plain.step[0] * 0.6 and abs(chosen.q).max() <= 15
    assert chosen.q[3, 0, 1, 2] == 15          # clipped to the grid's end
    error = lambda t: ((t.dequantize() - x) ** 2).sum(axis=(0, 2, 3))
    assert (error(chosen) <= error(plain)).all() and error(chosen)[0] < 0.5 * error(plain)[0]
    assert chosen.step[1] >= plain.step[1] * EMBED_STEP_FRACTIONS[2]
    zero = step_quantize_embeddings(np.zeros((2, 1, 2, 2), np.float32), 6)
    assert zero.step[0] == 1.0 and not zero.q.any()
