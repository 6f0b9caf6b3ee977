"""Bad input gives a clear error that names the argument or shape."""
import pytest

import kiln
import kiln.nn as nn
import kiln.nn.functional as F


def test_conv_wrong_channels_and_rank():
    conv = nn.Conv2d(3, 8, 3)
    with pytest.raises(RuntimeError, match=r"in_channels=3.*\[2, 4, 8, 8\] to have 3 channels, but got 4"):
        conv(kiln.randn(2, 4, 8, 8))
    with pytest.raises(RuntimeError, match=r"expected 3D \(unbatched\) or 4D \(batched\) input.*\[8, 8\]"):
        conv(kiln.randn(8, 8))
    with pytest.raises(RuntimeError, match=r"weight of size \[8, 3, 3, 3\], expected input\[2, 4, 8, 8\] to have 3"):
        F.conv2d(kiln.randn(2, 4, 8, 8), conv.weight)
    with pytest.raises(RuntimeError, match=r"Kernel size: 3.*can't be greater than actual input size"):
        conv(kiln.randn(1, 3, 2, 2))
    with pytest.raises(RuntimeError, match="weight must have 4 dimensions"):
        F.conv2d(kiln.randn(1, 3, 5, 5), kiln.randn(3, 3, 3))
    with pytest.raises(RuntimeError, match="Input type \\(float64\\) and weight type \\(float32\\)"):
        conv(kiln.randn(1, 3, 5, 5, dtype=kiln.float64))


def test_conv_bad_constructor_arguments():
    with pytest.raises(ValueError, match="kernel_size must be positive"):
        nn.Conv2d(3, 8, 0)
    with pytest.raises(ValueError, match="kernel_size must be an int or a tuple of 2 ints"):
        nn.Conv2d(3, 8, (3, 3, 3))
    with pytest.raises(ValueError, match="in_channels must be divisible by groups"):
        nn.Conv2d(3, 8, 3, groups=2)
    with pytest.raises(ValueError, match="padding='same' is not supported for strided convolutions"):
        nn.Conv2d(3, 8, 3, stride=2, padding="same")
    with pytest.raises(ValueError, match="Invalid padding string 'full'"):
        nn.Conv1d(3, 8, 3, padding="full")
    with pytest.raises(ValueError, match="padding_mode must be one of"):
        nn.Conv2d(3, 8, 3, padding_mode="mirror")
    with pytest.raises(TypeError, match="kernel_size must be an int"):
        nn.Conv2d(3, 8, 2.5)


def test_linear_wrong_features():
    lin = nn.Linear(4, 2)
    with pytest.raises(RuntimeError, match=r"Linear\(in_features=4\): expected input of shape \(\*, 4\), got \[3, 5\]"):
        lin(kiln.randn(3, 5))
    with pytest.raises(RuntimeError, match="mat1 and mat2 shapes cannot be multiplied \\(3x5 and 4x2\\)"):
        F.linear(kiln.randn(3, 5), lin.weight)
    with pytest.raises(ValueError, match="in_features must be a non-negative int"):
        nn.Linear(-1, 2)


def test_pool_bad_arguments():
    with pytest.raises(RuntimeError, match="pad should be at most half of effective kernel size"):
        F.max_pool2d(kiln.randn(1, 1, 6, 6), 2, padding=2)
    with pytest.raises(RuntimeError, match="kernel_size must be greater than zero"):
        nn.MaxPool2d(0)(kiln.randn(1, 1, 4, 4))
    with pytest.raises(RuntimeError, match=r"Expected 3D or 4D input.*\[4, 4\]"):
        nn.MaxPool2d(2)(kiln.randn(4, 4))
    with pytest.raises(RuntimeError, match="larger than the padded input"):
        nn.AvgPool2d(5)(kiln.randn(1, 1, 3, 3))


def test_norm_layers_bad_input():
    with pytest.raises(ValueError, match=r"expected 4D input \(got 3D input\)"):
        nn.BatchNorm2d(3)(kiln.randn(2, 3, 4))
    with pytest.raises(ValueError, match=r"BatchNorm1d\(3\): expected input with 3 channels"):
        nn.BatchNorm1d(3)(kiln.randn(2, 5))
    with pytest.raises(RuntimeError, match=r"normalized_shape=\[5\], expected input with shape \[\*, 5\]"):
        nn.LayerNorm(5)(kiln.randn(2, 4))
    with pytest.raises(ValueError, match=r"num_channels \(5\) must be divisible by num_groups \(2\)"):
        nn.GroupNorm(2, 5)


def test_embedding_and_losses_bad_input():
    with pytest.raises(IndexError, match="out of range for embedding with 3 rows"):
        nn.Embedding(3, 2)(kiln.tensor([3]))
    with pytest.raises(ValueError, match=r"Expected target size \[4\] for input of size \[4, 3\], got \[4, 1\]"):
        nn.CrossEntropyLoss()(kiln.randn(4, 3), kiln.zeros(4, 1, dtype=kiln.int64))
    with pytest.raises(ValueError, match="class-probability target must have the input's shape"):
        nn.CrossEntropyLoss()(kiln.randn(4, 3), kiln.randn(4, 2))


def test_module_misuse():
    class NoForward(nn.Module):
        pass

    with pytest.raises(NotImplementedError, match='missing the required "forward" function'):
        NoForward()(kiln.zeros(1))
    with pytest.raises(TypeError, match="cannot assign 'int' object to parameter 'p'"):
        nn.Module().register_parameter("p", 3)
    with pytest.raises(TypeError, match="data must be a kiln Tensor"):
        nn.Parameter([1.0, 2.0])
