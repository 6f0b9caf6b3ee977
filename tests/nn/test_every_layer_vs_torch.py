"""Every Module class kiln.nn exports, run beside its PyTorch twin (issue 9, item 5).

`CASES` maps each exported class name to one case: a factory called with the nn namespace (`kiln.nn` or
`torch.nn`), the inputs, and options. The parametrized test builds both modules, copies torch's weights
into kiln, and compares the output, the input gradients and the parameter gradients of a random
cotangent. Dropout variants are random, so `DROPOUT_CASES` compares their statistics (fraction zeroed,
scaling of kept values, whole-feature masks, moments kept by alpha dropout) instead. `test_walk_exports`
fails for any exported Module subclass that is in none of `CASES`, `DROPOUT_CASES` and `EXCLUDED`.
"""
from __future__ import annotations

import inspect

import numpy as np
import pytest

import kiln
import kiln.nn as nn
from nn_compare import check_module

torch = pytest.importorskip("torch")
tnn = torch.nn

rng = np.random.default_rng(0)


def r(*shape, dtype=np.float32):
    return rng.standard_normal(shape).astype(dtype)


def prob(*shape):
    return rng.uniform(0.05, 0.95, size=shape).astype(np.float32)


def ints(high, *shape):
    return rng.integers(0, high, size=shape).astype(np.int64)


def signs(*shape):
    return np.where(rng.random(shape) < 0.5, -1.0, 1.0).astype(np.float32)


def _wrap(m, fn, **children):
    """A module of namespace `m` whose forward is fn(self, *inputs), holding the given child modules."""
    class Wrapped(m.Module):
        def __init__(self):
            super().__init__()
            for name, child in children.items():
                setattr(self, name, child)

        def forward(self, *xs):
            return fn(self, *xs)
    return Wrapped()


def _pool_unpool(m, n):
    return _wrap(m, lambda s, x: s.unpool(*s.pool(x), output_size=x.shape[2:]),
                 pool=getattr(m, f"MaxPool{n}d")(2, return_indices=True), unpool=getattr(m, f"MaxUnpool{n}d")(2))


def _ctc(m):
    return _wrap(m, lambda s, lp, tg, il, tl: s.loss(lp.log_softmax(2), tg, il, tl), loss=m.CTCLoss())


def _encoder(m):
    extra = {"enable_nested_tensor": False} if m is tnn else {}
    return m.TransformerEncoder(m.TransformerEncoderLayer(8, 2, 16, dropout=0.0), 2, norm=m.LayerNorm(8), **extra)


def case(factory, inputs, *, eval=False, lazy=False, out=None, needs_grad=None, rtol=1e-5):
    return dict(factory=factory, inputs=inputs, eval=eval, lazy=lazy, out=out, needs_grad=needs_grad, rtol=rtol)


first = lambda o: o[0]  # noqa: E731  (RNNs, attention: the output sequence)

CASES = {
    # pooling
    "AdaptiveAvgPool1d": case(lambda m: m.AdaptiveAvgPool1d(4), lambda: [r(2, 3, 11)]),
    "AdaptiveAvgPool2d": case(lambda m: m.AdaptiveAvgPool2d((3, 4)), lambda: [r(2, 3, 7, 10)]),
    "AdaptiveAvgPool3d": case(lambda m: m.AdaptiveAvgPool3d((2, 3, None)), lambda: [r(1, 2, 5, 7, 3)]),
    "AdaptiveMaxPool1d": case(lambda m: m.AdaptiveMaxPool1d(4), lambda: [r(2, 3, 11)]),
    "AdaptiveMaxPool2d": case(lambda m: m.AdaptiveMaxPool2d((3, 4)), lambda: [r(2, 3, 7, 10)]),
    "AdaptiveMaxPool3d": case(lambda m: m.AdaptiveMaxPool3d((2, 3, 2)), lambda: [r(1, 2, 5, 6, 3)]),
    "AvgPool1d": case(lambda m: m.AvgPool1d(3, stride=2, padding=1), lambda: [r(2, 3, 9)]),
    "AvgPool2d": case(lambda m: m.AvgPool2d(3, stride=2, padding=1, ceil_mode=True), lambda: [r(2, 2, 8, 7)]),
    "AvgPool3d": case(lambda m: m.AvgPool3d(2, stride=(2, 1, 2), padding=1, count_include_pad=False),
                      lambda: [r(1, 2, 5, 4, 5)]),
    "LPPool1d": case(lambda m: m.LPPool1d(2, 3, stride=2), lambda: [r(2, 3, 9)]),
    "LPPool2d": case(lambda m: m.LPPool2d(2, 3, stride=2), lambda: [r(2, 3, 7, 8)]),
    "LPPool3d": case(lambda m: m.LPPool3d(3, 2), lambda: [np.abs(r(1, 2, 4, 4, 6)) + 0.1]),
    "MaxPool1d": case(lambda m: m.MaxPool1d(3, stride=2, padding=1), lambda: [r(2, 3, 10)]),
    "MaxPool2d": case(lambda m: m.MaxPool2d(3, stride=2, padding=1), lambda: [r(2, 3, 7, 8)]),
    "MaxPool3d": case(lambda m: m.MaxPool3d(2, stride=(2, 1, 2), padding=1, ceil_mode=True),
                      lambda: [r(1, 2, 5, 4, 5)]),
    "MaxUnpool1d": case(lambda m: _pool_unpool(m, 1), lambda: [r(2, 3, 9)]),
    "MaxUnpool2d": case(lambda m: _pool_unpool(m, 2), lambda: [r(2, 3, 5, 4)]),
    "MaxUnpool3d": case(lambda m: _pool_unpool(m, 3), lambda: [r(1, 2, 4, 5, 4)]),
    # padding
    "CircularPad1d": case(lambda m: m.CircularPad1d((2, 1)), lambda: [r(2, 3, 4)]),
    "CircularPad2d": case(lambda m: m.CircularPad2d((1, 0, 2, 1)), lambda: [r(2, 3, 4, 5)]),
    "CircularPad3d": case(lambda m: m.CircularPad3d((1, 0, 2, 1, 1, 1)), lambda: [r(1, 2, 3, 4, 3)]),
    "ConstantPad1d": case(lambda m: m.ConstantPad1d((2, 1), 1.5), lambda: [r(2, 3, 4)]),
    "ConstantPad2d": case(lambda m: m.ConstantPad2d((1, 0, 2, 1), -0.5), lambda: [r(2, 3, 4, 5)]),
    "ConstantPad3d": case(lambda m: m.ConstantPad3d(1, 2.0), lambda: [r(1, 2, 3, 4, 3)]),
    "ReflectionPad1d": case(lambda m: m.ReflectionPad1d((3, 1)), lambda: [r(2, 3, 5)]),
    "ReflectionPad2d": case(lambda m: m.ReflectionPad2d((1, 2, 2, 0)), lambda: [r(2, 3, 4, 5)]),
    "ReflectionPad3d": case(lambda m: m.ReflectionPad3d((1, 2, 0, 1, 2, 1)), lambda: [r(1, 2, 3, 4, 4)]),
    "ReplicationPad1d": case(lambda m: m.ReplicationPad1d((3, 1)), lambda: [r(2, 3, 4)]),
    "ReplicationPad2d": case(lambda m: m.ReplicationPad2d((1, 2, 2, 0)), lambda: [r(2, 3, 4, 5)]),
    "ReplicationPad3d": case(lambda m: m.ReplicationPad3d((1, 2, 0, 1, 2, 1)), lambda: [r(1, 2, 3, 4, 4)]),
    "ZeroPad1d": case(lambda m: m.ZeroPad1d((2, 1)), lambda: [r(2, 3, 4)]),
    "ZeroPad2d": case(lambda m: m.ZeroPad2d((1, 2, 0, 1)), lambda: [r(2, 3, 4, 5)]),
    "ZeroPad3d": case(lambda m: m.ZeroPad3d((1, 0, 2, 1, 0, 1)), lambda: [r(1, 2, 3, 4, 3)]),
    # normalisation
    "BatchNorm1d": case(lambda m: m.BatchNorm1d(4), lambda: [r(5, 4, 3)]),
    "BatchNorm2d": case(lambda m: m.BatchNorm2d(3), lambda: [r(4, 3, 5, 5)]),
    "BatchNorm3d": case(lambda m: m.BatchNorm3d(3, momentum=0.3), lambda: [r(2, 3, 2, 3, 4)]),
    "SyncBatchNorm": case(lambda m: m.SyncBatchNorm(3), lambda: [r(4, 3, 2, 2, 2)]),
    "InstanceNorm1d": case(lambda m: m.InstanceNorm1d(3, affine=True), lambda: [r(2, 3, 7)]),
    "InstanceNorm2d": case(lambda m: m.InstanceNorm2d(3, affine=True), lambda: [r(2, 3, 5, 4)]),
    "InstanceNorm3d": case(lambda m: m.InstanceNorm3d(3, affine=True), lambda: [r(2, 3, 3, 4, 3)]),
    "GroupNorm": case(lambda m: m.GroupNorm(2, 6), lambda: [r(3, 6, 4, 4)]),
    "LayerNorm": case(lambda m: m.LayerNorm((4, 6)), lambda: [r(3, 4, 6)]),
    "RMSNorm": case(lambda m: m.RMSNorm((3, 4)), lambda: [r(2, 3, 4)]),
    "LocalResponseNorm": case(lambda m: m.LocalResponseNorm(3, alpha=0.1, beta=0.6, k=2.0),
                              lambda: [r(2, 5, 3, 4)]),
    # lazy modules: materialised by a first forward, then compared
    "LazyLinear": case(lambda m: m.LazyLinear(3), lambda: [r(4, 5)], lazy=True),
    "LazyConv1d": case(lambda m: m.LazyConv1d(4, 3, stride=2), lambda: [r(2, 3, 9)], lazy=True),
    "LazyConv2d": case(lambda m: m.LazyConv2d(4, 3, padding=1), lambda: [r(2, 3, 5, 6)], lazy=True),
    "LazyConv3d": case(lambda m: m.LazyConv3d(2, 2), lambda: [r(1, 3, 3, 4, 3)], lazy=True),
    "LazyConvTranspose1d": case(lambda m: m.LazyConvTranspose1d(3, 3, stride=2), lambda: [r(2, 2, 5)], lazy=True),
    "LazyConvTranspose2d": case(lambda m: m.LazyConvTranspose2d(3, 2, stride=2), lambda: [r(2, 2, 3, 4)],
                                lazy=True),
    "LazyConvTranspose3d": case(lambda m: m.LazyConvTranspose3d(2, 2), lambda: [r(1, 2, 2, 3, 2)], lazy=True),
    "LazyBatchNorm1d": case(lambda m: m.LazyBatchNorm1d(), lambda: [r(6, 4)], lazy=True),
    "LazyBatchNorm2d": case(lambda m: m.LazyBatchNorm2d(), lambda: [r(3, 4, 3, 3)], lazy=True),
    "LazyBatchNorm3d": case(lambda m: m.LazyBatchNorm3d(), lambda: [r(2, 3, 2, 3, 2)], lazy=True),
    "LazyInstanceNorm1d": case(lambda m: m.LazyInstanceNorm1d(affine=True), lambda: [r(2, 3, 7)], lazy=True),
    "LazyInstanceNorm2d": case(lambda m: m.LazyInstanceNorm2d(affine=True), lambda: [r(2, 3, 4, 5)], lazy=True),
    "LazyInstanceNorm3d": case(lambda m: m.LazyInstanceNorm3d(affine=True), lambda: [r(2, 3, 3, 2, 4)],
                               lazy=True),
    # linear, conv, embedding
    "Linear": case(lambda m: m.Linear(5, 3), lambda: [r(2, 4, 5)]),
    "Bilinear": case(lambda m: m.Bilinear(3, 4, 2), lambda: [r(5, 3), r(5, 4)]),
    "Identity": case(lambda m: m.Identity(), lambda: [r(2, 3)]),
    "Conv1d": case(lambda m: m.Conv1d(3, 4, 3, stride=2, padding=1), lambda: [r(2, 3, 9)]),
    "Conv2d": case(lambda m: m.Conv2d(4, 6, 3, dilation=2, groups=2), lambda: [r(2, 4, 9, 9)]),
    "Conv3d": case(lambda m: m.Conv3d(2, 3, 2, stride=(1, 2, 1), padding=1), lambda: [r(1, 2, 4, 5, 4)]),
    "ConvTranspose1d": case(lambda m: m.ConvTranspose1d(2, 3, 4, stride=3, padding=2), lambda: [r(2, 2, 6)]),
    "ConvTranspose2d": case(lambda m: m.ConvTranspose2d(3, 4, 3, stride=2, padding=1, output_padding=1),
                            lambda: [r(2, 3, 5, 4)]),
    "ConvTranspose3d": case(lambda m: m.ConvTranspose3d(2, 2, 2, stride=2), lambda: [r(1, 2, 2, 3, 2)]),
    "Embedding": case(lambda m: m.Embedding(10, 4, padding_idx=2), lambda: [ints(10, 3, 4)]),
    "EmbeddingBag": case(lambda m: m.EmbeddingBag(10, 3, mode="mean"), lambda: [ints(10, 4, 3)]),
    "DataParallel": case(lambda m: m.DataParallel(m.Linear(3, 2)), lambda: [r(4, 3)]),
    "Sequential": case(lambda m: m.Sequential(m.Linear(4, 8), m.ReLU(), m.Linear(8, 3)), lambda: [r(5, 4)]),
    # reshaping and distances
    "ChannelShuffle": case(lambda m: m.ChannelShuffle(3), lambda: [r(2, 6, 2, 2)]),
    "Flatten": case(lambda m: m.Flatten(), lambda: [r(2, 3, 4, 5)]),
    "Unflatten": case(lambda m: m.Unflatten(1, (2, 3)), lambda: [r(4, 6)]),
    "Fold": case(lambda m: m.Fold((5, 6), (2, 3), padding=(1, 0), stride=(2, 1)), lambda: [r(2, 12, 12)]),
    "Unfold": case(lambda m: m.Unfold((2, 3), dilation=(1, 2), padding=1, stride=(2, 1)), lambda: [r(2, 3, 6, 7)]),
    "PixelShuffle": case(lambda m: m.PixelShuffle(2), lambda: [r(2, 8, 3, 4)]),
    "PixelUnshuffle": case(lambda m: m.PixelUnshuffle(2), lambda: [r(2, 3, 4, 6)]),
    "Upsample": case(lambda m: m.Upsample(size=(7, 9), mode="bilinear"), lambda: [r(2, 3, 4, 5)]),
    "UpsamplingBilinear2d": case(lambda m: m.UpsamplingBilinear2d(scale_factor=3), lambda: [r(1, 2, 3, 4)]),
    "UpsamplingNearest2d": case(lambda m: m.UpsamplingNearest2d(size=(5, 7)), lambda: [r(2, 3, 3, 4)]),
    "CosineSimilarity": case(lambda m: m.CosineSimilarity(dim=1), lambda: [r(4, 6), r(4, 6)]),
    "PairwiseDistance": case(lambda m: m.PairwiseDistance(p=1.5), lambda: [r(4, 6), r(4, 6)]),
    # activations
    "CELU": case(lambda m: m.CELU(1.3), lambda: [r(3, 7)]),
    "ELU": case(lambda m: m.ELU(0.7), lambda: [r(3, 7)]),
    "GELU": case(lambda m: m.GELU(approximate="tanh"), lambda: [r(3, 7)]),
    "GLU": case(lambda m: m.GLU(dim=0), lambda: [r(4, 7)]),
    "Hardshrink": case(lambda m: m.Hardshrink(0.3), lambda: [r(3, 7)]),
    "Hardsigmoid": case(lambda m: m.Hardsigmoid(), lambda: [r(3, 7) * 4]),
    "Hardswish": case(lambda m: m.Hardswish(), lambda: [r(3, 7) * 4]),
    "Hardtanh": case(lambda m: m.Hardtanh(-0.5, 0.8), lambda: [r(3, 7)]),
    "LeakyReLU": case(lambda m: m.LeakyReLU(0.2), lambda: [r(3, 7)]),
    "LogSigmoid": case(lambda m: m.LogSigmoid(), lambda: [r(3, 7)]),
    "LogSoftmax": case(lambda m: m.LogSoftmax(dim=1), lambda: [r(3, 7)]),
    "Mish": case(lambda m: m.Mish(), lambda: [r(3, 7)]),
    "PReLU": case(lambda m: m.PReLU(3), lambda: [r(2, 3, 4)]),
    "ReLU": case(lambda m: m.ReLU(), lambda: [r(3, 7)]),
    "ReLU6": case(lambda m: m.ReLU6(), lambda: [r(3, 7) * 4]),
    "RReLU": case(lambda m: m.RReLU(0.1, 0.3), lambda: [r(3, 7)], eval=True),
    "SELU": case(lambda m: m.SELU(), lambda: [r(3, 7)]),
    "SiLU": case(lambda m: m.SiLU(), lambda: [r(3, 7)]),
    "Sigmoid": case(lambda m: m.Sigmoid(), lambda: [r(3, 7)]),
    "Softmax": case(lambda m: m.Softmax(dim=-1), lambda: [r(2, 3, 7)]),
    "Softmax2d": case(lambda m: m.Softmax2d(), lambda: [r(2, 3, 4, 5)]),
    "Softmin": case(lambda m: m.Softmin(dim=0), lambda: [r(3, 7)]),
    "Softplus": case(lambda m: m.Softplus(beta=2.0, threshold=3.0), lambda: [r(3, 7)]),
    "Softshrink": case(lambda m: m.Softshrink(0.3), lambda: [r(3, 7)]),
    "Softsign": case(lambda m: m.Softsign(), lambda: [r(3, 7)]),
    "Tanh": case(lambda m: m.Tanh(), lambda: [r(3, 7)]),
    "Tanhshrink": case(lambda m: m.Tanhshrink(), lambda: [r(3, 7)]),
    "Threshold": case(lambda m: m.Threshold(0.1, 20.0), lambda: [r(3, 7)]),
    # recurrent and attention
    "RNN": case(lambda m: m.RNN(4, 5, num_layers=2), lambda: [r(6, 3, 4)], out=first),
    "LSTM": case(lambda m: m.LSTM(4, 5, batch_first=True, bidirectional=True), lambda: [r(3, 6, 4)], out=first),
    "GRU": case(lambda m: m.GRU(4, 5), lambda: [r(6, 3, 4)], out=first),
    "RNNCell": case(lambda m: m.RNNCell(4, 5, nonlinearity="relu"), lambda: [r(3, 4), r(3, 5)]),
    "LSTMCell": case(lambda m: m.LSTMCell(4, 5), lambda: [r(3, 4)], out=lambda o: o[1]),
    "GRUCell": case(lambda m: m.GRUCell(4, 5), lambda: [r(3, 4), r(3, 5)]),
    "MultiheadAttention": case(lambda m: m.MultiheadAttention(8, 2), lambda: [r(5, 3, 8), r(4, 3, 8), r(4, 3, 8)],
                               out=first),
    "TransformerEncoderLayer": case(lambda m: m.TransformerEncoderLayer(8, 2, 16, dropout=0.0),
                                    lambda: [r(5, 3, 8)]),
    "TransformerDecoderLayer": case(lambda m: m.TransformerDecoderLayer(8, 2, 16, dropout=0.0, norm_first=True),
                                    lambda: [r(4, 3, 8), r(5, 3, 8)]),
    "TransformerEncoder": case(_encoder, lambda: [r(5, 3, 8)]),
    "TransformerDecoder": case(lambda m: m.TransformerDecoder(m.TransformerDecoderLayer(8, 2, 16, dropout=0.0), 2),
                               lambda: [r(4, 3, 8), r(5, 3, 8)]),
    "Transformer": case(lambda m: m.Transformer(8, 2, 1, 1, 16, dropout=0.0, batch_first=True),
                        lambda: [r(2, 5, 8), r(2, 4, 8)]),
    # losses: (input, target, ...); targets take no gradient
    "L1Loss": case(lambda m: m.L1Loss(), lambda: [r(4, 5), r(4, 5)], needs_grad=[True, False]),
    "MSELoss": case(lambda m: m.MSELoss(reduction="sum"), lambda: [r(4, 5), r(4, 5)], needs_grad=[True, False]),
    "HuberLoss": case(lambda m: m.HuberLoss(delta=0.5), lambda: [r(4, 5), r(4, 5)], needs_grad=[True, False]),
    "SmoothL1Loss": case(lambda m: m.SmoothL1Loss(beta=0.5), lambda: [r(4, 5), r(4, 5)],
                         needs_grad=[True, False]),
    "BCELoss": case(lambda m: m.BCELoss(), lambda: [prob(4, 5), prob(4, 5)], needs_grad=[True, False]),
    "BCEWithLogitsLoss": case(lambda m: m.BCEWithLogitsLoss(), lambda: [r(4, 5), prob(4, 5)],
                              needs_grad=[True, False]),
    "SoftMarginLoss": case(lambda m: m.SoftMarginLoss(), lambda: [r(4, 5), signs(4, 5)], needs_grad=[True, False]),
    "MultiLabelSoftMarginLoss": case(lambda m: m.MultiLabelSoftMarginLoss(),
                                     lambda: [r(4, 5), (prob(4, 5) > 0.5).astype(np.float32)],
                                     needs_grad=[True, False]),
    "KLDivLoss": case(lambda m: m.KLDivLoss(reduction="batchmean"),
                      lambda: [np.log(prob(4, 5)), prob(4, 5)], needs_grad=[True, False]),
    "PoissonNLLLoss": case(lambda m: m.PoissonNLLLoss(), lambda: [r(4, 5), ints(4, 4, 5).astype(np.float32)],
                           needs_grad=[True, False]),
    "GaussianNLLLoss": case(lambda m: m.GaussianNLLLoss(), lambda: [r(4, 5), r(4, 5), prob(4, 5) + 0.1],
                            needs_grad=[True, False, True]),
    "CrossEntropyLoss": case(lambda m: m.CrossEntropyLoss(label_smoothing=0.1), lambda: [r(2, 4, 3, 3),
                                                                                      ints(4, 2, 3, 3)]),
    "NLLLoss": case(lambda m: m.NLLLoss(ignore_index=1), lambda: [r(6, 5), ints(5, 6)]),
    "NLLLoss2d": case(lambda m: m.NLLLoss(), lambda: [r(2, 4, 3, 3), ints(4, 2, 3, 3)]),
    "MultiMarginLoss": case(lambda m: m.MultiMarginLoss(p=2, margin=0.7), lambda: [r(6, 5), ints(5, 6)]),
    "MultiLabelMarginLoss": case(lambda m: m.MultiLabelMarginLoss(),
                                 lambda: [r(3, 5), np.array([[3, 0, -1, 1, 1], [1, 2, 4, -1, 0], [0, 1, 2, 3, 4]])]),
    "HingeEmbeddingLoss": case(lambda m: m.HingeEmbeddingLoss(margin=0.5), lambda: [r(4, 5), signs(4, 5)],
                               needs_grad=[True, False]),
    "CosineEmbeddingLoss": case(lambda m: m.CosineEmbeddingLoss(margin=0.2), lambda: [r(4, 6), r(4, 6), signs(4)],
                                needs_grad=[True, True, False]),
    "MarginRankingLoss": case(lambda m: m.MarginRankingLoss(margin=0.3), lambda: [r(6), r(6), signs(6)],
                              needs_grad=[True, True, False]),
    "TripletMarginLoss": case(lambda m: m.TripletMarginLoss(margin=0.5, p=1.5, swap=True),
                              lambda: [r(4, 6), r(4, 6), r(4, 6)]),
    "TripletMarginWithDistanceLoss": case(lambda m: m.TripletMarginWithDistanceLoss(margin=0.8),
                                          lambda: [r(4, 6), r(4, 6), r(4, 6)]),
    "CTCLoss": case(_ctc, lambda: [r(8, 2, 5), np.array([[1, 2, 2], [3, 4, 1]]), np.array([8, 6]),
                                   np.array([3, 2])], needs_grad=[True, False, False, False]),
}

# Random modules: (factory, input shape, the feature axes one mask value spans (None: elementwise)).
DROPOUT_CASES = {
    "Dropout": (lambda m: m.Dropout(0.3), (40, 50, 10), None),
    "Dropout1d": (lambda m: m.Dropout1d(0.4), (40, 50, 12), (2,)),
    "Dropout2d": (lambda m: m.Dropout2d(0.4), (40, 50, 3, 4), (2, 3)),
    "Dropout3d": (lambda m: m.Dropout3d(0.4), (40, 50, 2, 2, 3), (2, 3, 4)),
    "AlphaDropout": (lambda m: m.AlphaDropout(0.2), (200, 100), None),
    "FeatureAlphaDropout": (lambda m: m.FeatureAlphaDropout(0.2), (40, 100, 6), (2,)),
}

EXCLUDED = {
    "Module": "the abstract base class; every case here exercises it",
    "ModuleList": "a container without forward; indexing and registration are tested in test_module.py",
    "ModuleDict": "a container without forward; tested in test_module.py",
    "ParameterList": "a container without forward; tested in test_module.py",
    "ParameterDict": "a container without forward; tested in test_module.py",
    "RNNBase": "the abstract base of RNN/LSTM/GRU, which are compared above",
    "RNNCellBase": "the abstract base of RNNCell/LSTMCell/GRUCell, which are compared above",
}

# Exported classes with no comparison yet. The walk test passes with these listed, and prints their count.
TODO_NOT_YET_COMPARED: set[str] = set()


def exported_module_classes() -> list[str]:
    return sorted(n for n in nn.__all__ if inspect.isclass(getattr(nn, n)) and issubclass(getattr(nn, n), nn.Module))


def test_walk_exports():
    names = exported_module_classes()
    assert len(names) > 100
    tables = {"CASES": set(CASES), "DROPOUT_CASES": set(DROPOUT_CASES), "EXCLUDED": set(EXCLUDED),
              "TODO_NOT_YET_COMPARED": TODO_NOT_YET_COMPARED}
    missing = [n for n in names if not any(n in t for t in tables.values())]
    assert not missing, f"kiln.nn exports Module classes compared with PyTorch nowhere: {missing}"
    for a in tables:
        for b in tables:
            assert a >= b or not tables[a] & tables[b], f"{sorted(tables[a] & tables[b])} in both {a} and {b}"
    stale = sorted(set().union(*tables.values()) - set(names))
    assert not stale, f"tables name classes kiln.nn does not export: {stale}"
    for name in CASES:
        assert hasattr(tnn, name), f"torch.nn has no {name}"
    print(f"{len(TODO_NOT_YET_COMPARED)} exported kiln.nn classes not yet compared with PyTorch: "
          f"{sorted(TODO_NOT_YET_COMPARED)}")


@pytest.mark.parametrize("name", sorted(CASES))
def test_layer_matches_torch(name):
    c = CASES[name]
    torch.manual_seed(0)
    tmod, kmod = c["factory"](tnn), c["factory"](nn)
    inputs = c["inputs"]()
    if c["lazy"]:  # materialise the parameters with a first forward
        tmod(*(torch.tensor(x) for x in inputs))
        kmod(*(kiln.from_numpy(x) for x in inputs))
    if c["eval"]:
        tmod.eval()
        kmod.eval()
    check_module(torch, tmod, kmod, *inputs, rtol=c["rtol"], out_index=c["out"], needs_grad=c["needs_grad"])


@pytest.mark.parametrize("name", sorted(DROPOUT_CASES))
def test_dropout_statistics_match_torch(name):
    factory, shape, feature_axes = DROPOUT_CASES[name]
    tmod, kmod = factory(tnn), factory(nn)
    p = kmod.p
    x = np.abs(r(*shape)) + 0.5  # positive, so a dropped value is told apart from a kept one
    kiln.manual_seed(0)
    torch.manual_seed(0)
    kx, tx = kiln.from_numpy(x).requires_grad_(True), torch.tensor(x, requires_grad=True)
    ky, ty = kmod(kx), tmod(tx)
    kyn, tyn = ky.detach().numpy(), ty.detach().numpy()
    assert kyn.shape == tyn.shape == x.shape
    if "Alpha" in name:
        # values are affinely mapped so that a SELU-normalised input keeps mean 0 and variance 1
        z = r(*shape)
        kz, tz = kmod(kiln.from_numpy(z)).numpy(), tmod(torch.tensor(z)).detach().numpy()
        for stat in (np.mean, np.std):
            assert abs(stat(kz) - stat(tz)) < 0.03, (name, stat.__name__, stat(kz), stat(tz))
        # a dropped value is the one constant a * alpha' + b, below every kept (positive) value's image
        dropped_k = np.isclose(kyn, np.min(kyn))
        dropped_t = np.isclose(tyn, np.min(tyn))
    else:
        dropped_k, dropped_t = kyn == 0, tyn == 0
        np.testing.assert_allclose(kyn[~dropped_k], x[~dropped_k] / (1 - p), rtol=1e-6)
        np.testing.assert_allclose(tyn[~dropped_t], x[~dropped_t] / (1 - p), rtol=1e-6)
    frac_k, frac_t = dropped_k.mean(), dropped_t.mean()
    tol = 4 * np.sqrt(p * (1 - p) / (dropped_k.size if feature_axes is None else
                                     np.prod([s for i, s in enumerate(shape) if i not in feature_axes])))
    assert abs(frac_k - p) < tol and abs(frac_t - p) < tol, (name, frac_k, frac_t, p)
    if feature_axes is not None:  # one draw per (sample, channel): whole features zeroed together
        assert np.all(dropped_k.all(axis=feature_axes) | (~dropped_k).all(axis=feature_axes)), name
    ct = r(*shape)
    (ky * kiln.from_numpy(ct)).sum().backward()
    (ty * torch.tensor(ct)).sum().backward()
    kg, tg = kx.grad.numpy(), tx.grad.numpy()
    # the gradient is the cotangent, masked and scaled as the values were: the same scale as torch's
    np.testing.assert_array_equal(kg[dropped_k], 0)
    ratio_k, ratio_t = kg[~dropped_k] / ct[~dropped_k], tg[~dropped_t] / ct[~dropped_t]
    np.testing.assert_allclose(ratio_k, ratio_t.mean(), rtol=1e-5)
    np.testing.assert_allclose(ratio_t, ratio_t.mean(), rtol=1e-5)
    kmod.eval()
    tmod.eval()
    np.testing.assert_array_equal(kmod(kiln.from_numpy(x)).numpy(), x)


def _probabilities(*shape):
    p = prob(*shape)
    return p / p.sum(1, keepdims=True)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("opts", [{}, {"label_smoothing": 0.1}, {"weight": True},
                                  {"weight": True, "label_smoothing": 0.2}], ids=["plain", "smooth", "weight", "all"])
@pytest.mark.parametrize("shape", [(2, 4, 3, 5), (3, 4, 2), (4,)], ids=["spatial2d", "spatial1d", "unbatched"])
def test_cross_entropy_probability_targets_match_torch(shape, opts, reduction):
    """Class probabilities as targets: the mean divides by the number of samples times spatial positions."""
    kw = {"reduction": reduction, "label_smoothing": opts.get("label_smoothing", 0.0)}
    tkw = dict(kw)
    if opts.get("weight"):
        w = rng.uniform(0.2, 2.0, size=4).astype(np.float32)
        kw["weight"], tkw["weight"] = kiln.from_numpy(w), torch.tensor(w)
    x = r(*shape)
    target = _probabilities(*shape) if len(shape) > 1 else _probabilities(1, 4)[0]
    check_module(torch, tnn.CrossEntropyLoss(**tkw), nn.CrossEntropyLoss(**kw), x, target)
