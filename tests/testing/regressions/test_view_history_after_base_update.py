"""Eager views whose base was updated in place by a grad-requiring value report the new history
(as PyTorch), and a detached view never gains one (fuzz seed 271)."""
import kiln


def test_view_requires_grad_after_base_updated_in_place():
    base, g = kiln.ones(2, 3), kiln.ones((), requires_grad=True)
    view = base[:, 0]
    assert not view.requires_grad
    base.add_(g)
    assert view.requires_grad and view.grad_fn is not None and not view.is_leaf
    (view * 0.25).sum().backward()
    assert g.grad.item() == 0.5


def test_detached_view_stays_detached_after_base_updated_in_place():
    base, g = kiln.ones(2, 3), kiln.ones((), requires_grad=True)
    alias = base[0].detach()
    base.add_(g)
    assert not alias.requires_grad and alias.grad_fn is None
    assert not (alias * 2).requires_grad
    assert alias.tolist() == [2.0, 2.0, 2.0]
