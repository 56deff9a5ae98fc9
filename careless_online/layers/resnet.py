"""Pre-activation residual MLPs without normalization.

The blocks follow the ResNet v2 ("identity mapping") ordering,
``y = x + W2 act(W1 act(x))``, with no normalization layers. Kernels are drawn
from a truncated normal whose width shrinks with the depth of the stack so that
the residual stream does not grow with the number of blocks.
"""

import math

import keras

from careless_online.checks import integer_at_least

_PACKAGE = "careless_online"


def widths(d_model, d_ff, n_blocks, min_blocks=0):
    """Checked ``(d_model, d_ff, n_blocks)`` of a residual stack.

    ``d_ff`` defaults to ``2 * d_model``; widths must be at least 1 and
    ``n_blocks`` at least ``min_blocks`` (ValueError otherwise).
    """
    d_model = integer_at_least("d_model", d_model, 1)
    d_ff = 2 * d_model if d_ff is None else integer_at_least("d_ff", d_ff, 1)
    return d_model, d_ff, integer_at_least("n_blocks", n_blocks, min_blocks)


def resnet_initializer(d_in, d_out, n_blocks):
    """Kernel initializer for a dense layer inside a residual stack.

    Parameters
    ----------
    d_in : int
        Input width of the dense layer.
    d_out : int
        Output width of the dense layer.
    n_blocks : int
        Total number of residual blocks in the stack (at least 1).

    Returns
    -------
    keras.initializers.TruncatedNormal
        Zero-mean normal truncated at two standard deviations, with
        ``stddev = sqrt(2 / (5 * n_blocks * (d_in + d_out)))``. As for any
        normal truncated at 2 sigma, the standard deviation of the drawn
        values is about 0.88 times ``stddev``.
    """
    if n_blocks < 1:
        raise ValueError(f"n_blocks must be at least 1, got {n_blocks}")
    stddev = math.sqrt(2.0 / (5.0 * n_blocks * (d_in + d_out)))
    return keras.initializers.TruncatedNormal(mean=0.0, stddev=stddev)


def _dense(d_in, d_out, n_blocks, kernel_initializer=None, name=None):
    """Dense layer with the residual-stack initialization and zero bias."""
    if kernel_initializer is None:
        kernel_initializer = resnet_initializer(d_in, d_out, n_blocks)
    return keras.layers.Dense(
        d_out,
        kernel_initializer=kernel_initializer,
        bias_initializer="zeros",
        name=name,
    )


@keras.saving.register_keras_serializable(package=_PACKAGE)
class FeedForward(keras.layers.Layer):
    """One pre-activation residual block: ``x + W2(act(W1(act(x))))``.

    Parameters
    ----------
    d_model : int
        Width of the residual stream (input and output width).
    d_ff : int, optional
        Hidden width; defaults to ``2 * d_model``.
    activation : str
        Any keras activation name ('relu', 'gelu', 'swish', ...).
    n_blocks : int
        Total number of blocks of the stack this block belongs to; only sets
        the initialization scale.

    Its weights are created at construction (the width is known).
    """

    def __init__(self, d_model, d_ff=None, activation="relu", n_blocks=1, **kwargs):
        super().__init__(**kwargs)
        self.d_model, self.d_ff, self.n_blocks = widths(d_model, d_ff, n_blocks, min_blocks=1)
        self.activation = activation
        self._act = keras.activations.get(activation)
        self.w1 = _dense(self.d_model, self.d_ff, self.n_blocks, name="w1")
        self.w2 = _dense(self.d_ff, self.d_model, self.n_blocks, name="w2")
        self.build((None, self.d_model))

    def build(self, input_shape):
        if self.w1.built:
            return
        self.w1.build((None, self.d_model))
        self.w2.build((None, self.d_ff))
        self.built = True

    def call(self, x):
        return x + self.w2(self._act(self.w1(self._act(x))))

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(
            d_model=self.d_model,
            d_ff=self.d_ff,
            activation=self.activation,
            n_blocks=self.n_blocks,
        )
        return config


@keras.saving.register_keras_serializable(package=_PACKAGE)
class ResNet(keras.layers.Layer):
    """Residual MLP: input projection, residual blocks, optional output head.

    ``Dense(d_in -> d_model)``, then ``n_blocks`` :class:`FeedForward` blocks,
    then (when ``d_out`` is given) a final activation and
    ``Dense(d_model -> d_out)``. Without ``d_out`` the residual stream is
    returned as is.

    Parameters
    ----------
    d_model : int
        Width of the residual stream.
    d_ff : int, optional
        Hidden width of each block; defaults to ``2 * d_model``.
    n_blocks : int
        Number of residual blocks (0 allowed: a linear map, or linear +
        activation + linear when ``d_out`` is given).
    activation : str
        Any keras activation name.
    d_out : int, optional
        Width of the output projection; None for no projection.
    output_kernel_initializer : str or dict or keras.initializers.Initializer, optional
        Kernel initializer of the output projection; None uses
        :func:`resnet_initializer`. 'zeros' makes the layer start as a
        constant (its bias) while still receiving gradients.
    d_in : int, optional
        Input width. When given, all weights are created at construction
        (so a model holding the layer can load weights before any call);
        otherwise on the first call.
    """

    def __init__(
        self,
        d_model,
        d_ff=None,
        n_blocks=2,
        activation="relu",
        d_out=None,
        output_kernel_initializer=None,
        d_in=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.d_model, self.d_ff, self.n_blocks = widths(d_model, d_ff, n_blocks)
        self.activation = activation
        self.d_out = None if d_out is None else integer_at_least("d_out", d_out, 1)
        self.output_kernel_initializer = (
            None
            if output_kernel_initializer is None
            else keras.initializers.get(output_kernel_initializer)
        )
        self._act = keras.activations.get(activation)
        self._init_blocks = max(self.n_blocks, 1)
        self.blocks = [
            FeedForward(
                self.d_model,
                self.d_ff,
                activation=activation,
                n_blocks=self._init_blocks,
                name=f"block_{i}",
            )
            for i in range(self.n_blocks)
        ]
        self.output_dense = None
        if self.d_out is not None:
            self.output_dense = _dense(
                self.d_model,
                self.d_out,
                self._init_blocks,
                kernel_initializer=self.output_kernel_initializer,
                name="output_dense",
            )
        # The input projection depends on the input width: made in build().
        self.input_dense = None
        self.d_in = None
        if d_in is not None:
            self.build((None, d_in))

    def build(self, input_shape):
        d_in = integer_at_least("input width", input_shape[-1], 1)
        if self.input_dense is not None:
            if d_in != self.d_in:
                raise ValueError(
                    f"{self.name} was built for input width {self.d_in}, got {d_in}"
                )
            return
        self.d_in = d_in
        self.input_dense = _dense(d_in, self.d_model, self._init_blocks, name="input_dense")
        self.input_dense.build((None, d_in))
        for block in self.blocks:
            block.build((None, self.d_model))
        if self.output_dense is not None:
            self.output_dense.build((None, self.d_model))
        self.built = True

    def call(self, x):
        h = self.input_dense(x)
        for block in self.blocks:
            h = block(h)
        if self.output_dense is None:
            return h
        return self.output_dense(self._act(h))

    def compute_output_shape(self, input_shape):
        width = self.d_model if self.d_out is None else self.d_out
        return tuple(input_shape[:-1]) + (width,)

    def get_config(self):
        config = super().get_config()
        config.update(
            d_model=self.d_model,
            d_ff=self.d_ff,
            n_blocks=self.n_blocks,
            activation=self.activation,
            d_out=self.d_out,
            d_in=self.d_in,
            output_kernel_initializer=(
                None
                if self.output_kernel_initializer is None
                else keras.initializers.serialize(self.output_kernel_initializer)
            ),
        )
        return config
