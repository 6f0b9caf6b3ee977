"""Losses (functional and module forms) against PyTorch: values and input gradients, every reduction."""
import numpy as np
import pytest

import kiln
import kiln.nn as nn
import kiln.nn.functional as F
from nn_compare import close

torch = pytest.importorskip("torch")
TF = torch.nn.functional
rng = np.random.default_rng(2)
REDUCTIONS = ["mean", "sum", "none"]


def r(*shape):
    return rng.standard_normal(shape).astype(np.float32)


def _compare(kfn, tfn, x: np.ndarray, others_np=(), kwargs_k=None, kwargs_t=None, rtol=1e-5):
    kx = kiln.from_numpy(x.copy()).requires_grad_(True)
    tx = torch.tensor(x, requires_grad=True)
    k_out = kfn(kx, *[kiln.from_numpy(o) if isinstance(o, np.ndarray) else o for o in others_np], **(kwargs_k or {}))
    t_out = tfn(tx, *[torch.tensor(o) if isinstance(o, np.ndarray) else o for o in others_np], **(kwargs_t or {}))
    close(k_out, t_out, rtol, "loss")
    ct = r(*t_out.shape)
    (t_out * torch.tensor(ct)).sum().backward()
    (k_out * kiln.from_numpy(ct)).sum().backward()
    close(kx.grad, tx.grad, rtol, "input grad")


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("opts", [{}, {"ignore_index": 2}, {"label_smoothing": 0.1}, {"weight": True},
                                  {"weight": True, "ignore_index": 1, "label_smoothing": 0.2}],
                         ids=["plain", "ignore", "smooth", "weight", "all"])
def test_cross_entropy_class_indices(reduction, opts):
    x = r(6, 5)
    t = rng.integers(0, 5, size=6).astype(np.int64)
    t[0] = 2
    t[1] = 1
    kw_k, kw_t = dict(opts), dict(opts)
    if opts.get("weight"):
        w = rng.uniform(0.2, 2.0, size=5).astype(np.float32)
        kw_k["weight"], kw_t["weight"] = kiln.from_numpy(w), torch.tensor(w)
    kw_k["reduction"] = kw_t["reduction"] = reduction
    _compare(F.cross_entropy, TF.cross_entropy, x, (t,), kw_k, kw_t)


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_cross_entropy_spatial_and_unbatched(reduction):
    x = r(2, 4, 3, 3)
    t = rng.integers(0, 4, size=(2, 3, 3)).astype(np.int64)
    _compare(F.cross_entropy, TF.cross_entropy, x, (t,), {"reduction": reduction, "label_smoothing": 0.05},
             {"reduction": reduction, "label_smoothing": 0.05})
    x1 = r(7)
    _compare(F.cross_entropy, TF.cross_entropy, x1, (np.array(3, dtype=np.int64),), {"reduction": reduction},
             {"reduction": reduction})


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("smoothing", [0.0, 0.3])
def test_cross_entropy_class_probabilities(reduction, smoothing):
    x = r(5, 4)
    p = rng.dirichlet(np.ones(4), size=5).astype(np.float32)
    w = rng.uniform(0.5, 1.5, size=4).astype(np.float32)
    _compare(F.cross_entropy, TF.cross_entropy, x, (p,),
             {"reduction": reduction, "label_smoothing": smoothing, "weight": kiln.from_numpy(w)},
             {"reduction": reduction, "label_smoothing": smoothing, "weight": torch.tensor(w)})


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_nll_loss(reduction):
    x = r(6, 5)
    t = rng.integers(0, 5, size=6).astype(np.int64)
    t[2] = -100
    w = rng.uniform(0.5, 1.5, size=5).astype(np.float32)
    _compare(F.nll_loss, TF.nll_loss, x, (t,), {"reduction": reduction, "weight": kiln.from_numpy(w)},
             {"reduction": reduction, "weight": torch.tensor(w)})


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("name", ["mse_loss", "l1_loss", "smooth_l1_loss", "huber_loss"])
def test_regression_losses(name, reduction):
    x, y = r(4, 3), r(4, 3)
    _compare(getattr(F, name), getattr(TF, name), x, (y,), {"reduction": reduction}, {"reduction": reduction})


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_binary_cross_entropy(reduction):
    x = rng.uniform(0.05, 0.95, size=(5, 3)).astype(np.float32)
    t = rng.uniform(0, 1, size=(5, 3)).astype(np.float32)
    w = rng.uniform(0.5, 2, size=(5, 3)).astype(np.float32)
    kx, tx = kiln.from_numpy(x).requires_grad_(True), torch.tensor(x, requires_grad=True)
    k_out = F.binary_cross_entropy(kx, kiln.from_numpy(t), weight=kiln.from_numpy(w), reduction=reduction)
    t_out = TF.binary_cross_entropy(tx, torch.tensor(t), weight=torch.tensor(w), reduction=reduction)
    close(k_out, t_out)
    k_out.sum().backward()
    t_out.sum().backward()
    close(kx.grad, tx.grad)


def test_binary_cross_entropy_clamps_log():
    x = np.array([0.0, 1.0, 0.5], dtype=np.float32)
    t = np.array([1.0, 0.0, 1.0], dtype=np.float32)
    close(F.binary_cross_entropy(kiln.from_numpy(x), kiln.from_numpy(t), reduction="none"),
          TF.binary_cross_entropy(torch.tensor(x), torch.tensor(t), reduction="none"))
    with pytest.raises(RuntimeError, match="between 0 and 1"):
        F.binary_cross_entropy(kiln.tensor([1.5]), kiln.tensor([1.0]))
    with pytest.raises(ValueError, match="different to the input size"):
        F.binary_cross_entropy(kiln.tensor([[0.5]]), kiln.tensor([1.0]))


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("pos", [False, True])
def test_bce_with_logits(reduction, pos):
    x = r(5, 3) * 4
    t = rng.uniform(0, 1, size=(5, 3)).astype(np.float32)
    pw = rng.uniform(0.5, 3, size=3).astype(np.float32)
    _compare(F.binary_cross_entropy_with_logits, TF.binary_cross_entropy_with_logits, x, (t,),
             {"reduction": reduction, "pos_weight": kiln.from_numpy(pw) if pos else None},
             {"reduction": reduction, "pos_weight": torch.tensor(pw) if pos else None})


@pytest.mark.parametrize("reduction", ["mean", "sum", "none", "batchmean"])
@pytest.mark.parametrize("log_target", [False, True])
def test_kl_div(reduction, log_target):
    x = np.log(rng.dirichlet(np.ones(4), size=3)).astype(np.float32)
    p = rng.dirichlet(np.ones(4), size=3).astype(np.float32)
    p[0, 0] = 0.0
    t = np.log(p + 1e-3).astype(np.float32) if log_target else p
    _compare(F.kl_div, TF.kl_div, x, (t,), {"reduction": reduction, "log_target": log_target},
             {"reduction": reduction, "log_target": log_target})


@pytest.mark.parametrize("name,args,shape,target", [
    ("MSELoss", {}, (4, 3), "float"), ("L1Loss", {"reduction": "sum"}, (4, 3), "float"),
    ("BCELoss", {}, (4, 3), "prob"), ("BCEWithLogitsLoss", {"pos_weight": "pw"}, (4, 3), "prob"),
    ("CrossEntropyLoss", {"label_smoothing": 0.1, "ignore_index": 0}, (6, 5), "index"),
    ("NLLLoss", {"reduction": "none"}, (6, 5), "index"), ("SmoothL1Loss", {"beta": 0.5}, (4, 3), "float"),
    ("HuberLoss", {"delta": 0.7}, (4, 3), "float"), ("KLDivLoss", {"reduction": "batchmean"}, (4, 3), "prob"),
])
def test_loss_modules(name, args, shape, target):
    x = r(*shape)
    if name == "BCELoss":
        x = rng.uniform(0.05, 0.95, size=shape).astype(np.float32)
    if target == "float":
        t = r(*shape)
    elif target == "prob":
        t = rng.uniform(0, 1, size=shape).astype(np.float32)
    else:
        t = rng.integers(0, shape[1], size=shape[0]).astype(np.int64)
    kargs, targs = dict(args), dict(args)
    if args.get("pos_weight") == "pw":
        pw = rng.uniform(0.5, 2, size=shape[-1]).astype(np.float32)
        kargs["pos_weight"], targs["pos_weight"] = kiln.from_numpy(pw), torch.tensor(pw)
    kmod, tmod = getattr(nn, name)(**kargs), getattr(torch.nn, name)(**targs)
    assert list(kmod.state_dict()) == list(tmod.state_dict())
    _compare(kmod, tmod, x, (t,))


def test_loss_bad_reduction_and_targets():
    with pytest.raises(ValueError, match="not a valid value for reduction"):
        nn.MSELoss(reduction="avg")
    with pytest.raises(ValueError, match="not a valid value for reduction"):
        F.cross_entropy(kiln.randn(3, 4), kiln.tensor([0, 1, 2]), reduction="bogus")
    with pytest.raises(IndexError, match="Target 7 is out of bounds"):
        F.cross_entropy(kiln.randn(3, 4), kiln.tensor([0, 7, 2]))
    with pytest.raises(ValueError, match=r"Expected target size \[3\]"):
        F.cross_entropy(kiln.randn(3, 4), kiln.tensor([0, 1]))
    with pytest.raises(RuntimeError, match="integer dtype"):
        F.nll_loss(kiln.randn(3, 4), kiln.randn(3))


def test_legacy_size_average_reduce():
    x, y = r(3, 2), r(3, 2)
    close(F.mse_loss(kiln.from_numpy(x), kiln.from_numpy(y), size_average=False),
          TF.mse_loss(torch.tensor(x), torch.tensor(y), reduction="sum"))
    close(F.mse_loss(kiln.from_numpy(x), kiln.from_numpy(y), reduce=False),
          TF.mse_loss(torch.tensor(x), torch.tensor(y), reduction="none"))


def test_regression_loss_warns_on_broadcast():
    with pytest.warns(UserWarning, match="different to the input size"):
        F.mse_loss(kiln.randn(4, 1), kiln.randn(4))


def _pm1(*shape):
    return np.where(rng.uniform(size=shape) > 0.5, 1.0, -1.0).astype(np.float32)


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_more_losses(reduction):
    red = {"reduction": reduction}
    x, y = r(5, 4), r(5, 4)
    _compare(F.poisson_nll_loss, TF.poisson_nll_loss, x, (np.abs(y) * 3,), red, red)
    _compare(lambda a, t: F.poisson_nll_loss(a, t, log_input=False, full=True, reduction=reduction),
             lambda a, t: TF.poisson_nll_loss(a, t, log_input=False, full=True, reduction=reduction),
             np.abs(x) + 0.1, (np.round(np.abs(y) * 3),))
    var = np.abs(r(5, 4)) + 0.1
    _compare(lambda a, t: F.gaussian_nll_loss(a, t, kiln.from_numpy(var), full=True, reduction=reduction),
             lambda a, t: TF.gaussian_nll_loss(a, t, torch.tensor(var), full=True, reduction=reduction), x, (y,))
    a1, a2, tgt = r(6), r(6), _pm1(6)
    _compare(lambda a, b, t: F.margin_ranking_loss(a, b, t, margin=0.2, reduction=reduction),
             lambda a, b, t: TF.margin_ranking_loss(a, b, t, margin=0.2, reduction=reduction), a1, (a2, tgt))
    _compare(F.hinge_embedding_loss, TF.hinge_embedding_loss, x, (_pm1(5, 4),), red, red)
    _compare(F.soft_margin_loss, TF.soft_margin_loss, x, (_pm1(5, 4),), red, red)
    w = rng.uniform(0.5, 2, size=4).astype(np.float32)
    _compare(F.multilabel_soft_margin_loss, TF.multilabel_soft_margin_loss, x,
             ((rng.uniform(size=(5, 4)) > 0.5).astype(np.float32),),
             {**red, "weight": kiln.from_numpy(w)}, {**red, "weight": torch.tensor(w)})
    cls = rng.integers(0, 4, size=5).astype(np.int64)
    for p in (1, 2):
        _compare(F.multi_margin_loss, TF.multi_margin_loss, x, (cls,), {**red, "p": p, "weight": kiln.from_numpy(w)},
                 {**red, "p": p, "weight": torch.tensor(w)})
    _compare(lambda a, b, t: F.cosine_embedding_loss(a, b, t, margin=0.1, reduction=reduction),
             lambda a, b, t: TF.cosine_embedding_loss(a, b, t, margin=0.1, reduction=reduction), x, (y, _pm1(5)))
    _compare(lambda a, b, c: F.triplet_margin_loss(a, b, c, swap=True, reduction=reduction),
             lambda a, b, c: TF.triplet_margin_loss(a, b, c, swap=True, reduction=reduction), x, (y, r(5, 4)))


def test_more_loss_modules_state_and_repr():
    for name in ("PoissonNLLLoss", "MarginRankingLoss", "HingeEmbeddingLoss", "SoftMarginLoss",
                 "MultiLabelSoftMarginLoss", "MultiMarginLoss", "CosineEmbeddingLoss", "TripletMarginLoss"):
        assert list(getattr(nn, name)().state_dict()) == list(getattr(torch.nn, name)().state_dict())
    x, y, var = r(3, 2), r(3, 2), np.abs(r(3, 2)) + 0.5
    close(nn.GaussianNLLLoss()(kiln.from_numpy(x), kiln.from_numpy(y), kiln.from_numpy(var)),
          torch.nn.GaussianNLLLoss()(torch.tensor(x), torch.tensor(y), torch.tensor(var)))


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("layout", ["padded", "concatenated"])
def test_ctc_loss_matches_torch(reduction, layout):
    T, N, C = 12, 3, 5
    logits = r(T, N, C)
    tg = rng.integers(1, C, size=(N, 4)).astype(np.int64)
    tg[0, 1] = tg[0, 0]  # a repeated label needs a blank between
    il, tl = np.array([12, 9, 7]), np.array([4, 2, 3])
    targets = tg if layout == "padded" else np.concatenate([tg[i, :tl[i]] for i in range(N)])
    # PyTorch's ctc_loss gradient is taken through log_softmax (its formula assumes normalised log-probs),
    # so compare gradients with respect to the logits
    tx, kx = torch.tensor(logits, requires_grad=True), kiln.from_numpy(logits).requires_grad_(True)
    t = TF.ctc_loss(tx.log_softmax(2), torch.tensor(targets), torch.tensor(il), torch.tensor(tl), reduction=reduction)
    k = nn.CTCLoss(reduction=reduction)(F.log_softmax(kx, 2), kiln.from_numpy(targets), il, tl)
    close(k, t)
    t.sum().backward()
    k.sum().backward()
    close(kx.grad, tx.grad)


def test_ctc_loss_impossible_alignment_and_unbatched():
    lp = np.log(np.full((3, 1, 4), 0.25, dtype=np.float32))
    tg, il, tl = np.array([[1, 1, 2]]), [3], [3]  # needs 4 frames (blank between the repeats)
    args_t = (torch.tensor(lp), torch.tensor(tg), torch.tensor(il), torch.tensor(tl))
    args_k = (kiln.from_numpy(lp), kiln.from_numpy(tg), il, tl)
    for zi in (False, True):
        t = TF.ctc_loss(*args_t, reduction="none", zero_infinity=zi)
        k = F.ctc_loss(*args_k, reduction="none", zero_infinity=zi)
        np.testing.assert_array_equal(k.numpy(), t.numpy())
    x = torch.randn(6, 4).log_softmax(1).numpy()
    close(F.ctc_loss(kiln.from_numpy(x), kiln.tensor([1, 2]), [6], [2]),
          TF.ctc_loss(torch.tensor(x), torch.tensor([1, 2]), torch.tensor([6]), torch.tensor([2])))
