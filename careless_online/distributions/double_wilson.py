"""The double-Wilson prior: a child dataset's amplitudes given its parent's.

Two related datasets (a dark and a light state, a native and a soak) have
complex structure factors whose normalized values ``E_c``, ``E_p`` are jointly
Gaussian with correlation ``r`` (the bivariate Wilson model).  Conditioned on
the parent's amplitude ``F_p``, the child's amplitude ``F_c`` follows, with
the Wilson scales ``s_c = sqrt(epsilon Sigma_c)`` and ``s_p = sqrt(epsilon Sigma_p)``
and the conditional mean ``nu = r (s_c / s_p) F_p``:

- acentric (complex ``F``; both components share the variance): Rice,

  .. math::

     p(F_c | F_p) = \\frac{F_c}{\\sigma^2}
        \\exp\\left(-\\frac{F_c^2 + \\nu^2}{2\\sigma^2}\\right)
        I_0\\left(\\frac{F_c \\nu}{\\sigma^2}\\right),
     \\qquad \\sigma^2 = \\frac{s_c^2 (1 - r^2)}{2};

- centric (real signed ``F``): the folded normal of mean ``nu`` and
  variance ``s_c^2 (1 - r^2)``,

  .. math::

     p(F_c | F_p) = \\frac{1}{s\\sqrt{2\\pi}}\\left[
        e^{-(F_c - \\nu)^2 / 2 s^2} + e^{-(F_c + \\nu)^2 / 2 s^2}\\right],
     \\qquad s^2 = s_c^2 (1 - r^2).

Both have ``<F_c^2 | F_p> = nu^2 + s_c^2 (1 - r^2)``, so that averaged over a
Wilson-distributed parent ``<F_c^2> = s_c^2``: the marginal of the child is
its own Wilson prior for every ``r``, and ``r = 0`` is exactly that prior.
"""

import keras
import numpy as np
import tensorflow as tf

#: Largest allowed correlation: ``1 - r^2`` must stay a usable width.
MAX_R = 0.999

# Amplitudes are floored here so that log F_c stays finite at a zero sample.
_TINY_F = 1e-30


def _check_r(r):
    value = tf.get_static_value(r)
    if value is not None and not np.all((value >= 0.0) & (value <= MAX_R)):
        raise ValueError(f"double-Wilson r must lie in [0, {MAX_R}]")


def _check_positive(name, values):
    value = tf.get_static_value(values)
    if value is not None and not np.all(np.isfinite(value) & (value > 0)):
        raise ValueError(f"DoubleWilsonPrior {name} must be positive and finite")


class DoubleWilsonPrior:
    """Conditional prior ``p(F_child | F_parent, r)`` per reflection.

    Parameters
    ----------
    centric : array-like of bool
        ``[n]`` True for centric reflections.
    epsilon : array-like of float
        ``[n]`` multiplicity (epsilon) factors.
    parent : array-like of float
        ``[n]`` or ``[..., n]`` parent amplitudes (e.g. posterior samples).
    r : float or array-like
        Correlation in ``[0, MAX_R]`` (per reflection, or per dataset gathered
        to the reflections).
    sigma_child, sigma_parent : float or array-like
        Wilson ``Sigma`` (mean intensity per epsilon) of each dataset.

    Raises
    ------
    ValueError
        If a constant ``r`` lies outside ``[0, MAX_R]`` or ``epsilon`` or a
        ``Sigma`` is not positive and finite (as tfp's ``validate_args``).
    """

    def __init__(self, centric, epsilon, parent, r, sigma_child=1.0, sigma_parent=1.0):
        epsilon = tf.convert_to_tensor(epsilon, tf.float32)
        sigma_child = tf.convert_to_tensor(sigma_child, tf.float32)
        sigma_parent = tf.convert_to_tensor(sigma_parent, tf.float32)
        r = tf.convert_to_tensor(r, tf.float32)
        _check_r(r)
        for name, value in (("epsilon", epsilon), ("sigma_child", sigma_child), ("sigma_parent", sigma_parent)):
            _check_positive(name, value)
        self.centric = tf.cast(centric, tf.bool)
        self.r = r
        s_child = tf.sqrt(epsilon * sigma_child)
        s_parent = tf.sqrt(epsilon * sigma_parent)
        self.loc = r * s_child / s_parent * tf.convert_to_tensor(parent, tf.float32)
        self.variance = tf.square(s_child) * (1.0 - tf.square(r))

    def _acentric_log_prob(self, F):
        half = 0.5 * self.variance
        z = F * self.loc / half
        return (tf.math.log(F) - tf.math.log(half) - tf.square(F - self.loc) / (2.0 * half)
                + tf.math.log(tf.math.bessel_i0e(z)))

    def _centric_log_prob(self, F):
        s2 = self.variance
        pair = tf.stack([-tf.square(F - self.loc), -tf.square(F + self.loc)], axis=0) / (2.0 * s2)
        return tf.reduce_logsumexp(pair, axis=0) - 0.5 * tf.math.log(2.0 * np.pi * s2)

    def log_prob(self, F):
        """Log density of child amplitudes ``F`` (broadcast against the parent).

        Parameters
        ----------
        F : array-like
            ``[n]`` or ``[..., n]`` non-negative amplitudes.

        Returns
        -------
        tf.Tensor
            ``log p(F | F_parent, r)``.
        """
        F = tf.maximum(tf.convert_to_tensor(F, tf.float32), _TINY_F)
        return tf.where(self.centric, self._centric_log_prob(F), self._acentric_log_prob(F))

    def prob(self, F):
        """Density of child amplitudes ``F``."""
        return tf.exp(self.log_prob(F))

    def second_moment(self):
        """``<F_child^2 | F_parent> = nu^2 + s_c^2 (1 - r^2)`` (both centricities)."""
        return tf.square(self.loc) + self.variance


def r_from_logit(logit):
    """Correlation in ``(0, MAX_R)`` from an unconstrained parameter: ``MAX_R * sigmoid(logit)``."""
    return MAX_R * tf.sigmoid(logit)


def logit_from_r(r):
    """Inverse of :func:`r_from_logit` (``r`` clipped into the open interval)."""
    fraction = np.clip(np.asarray(r, dtype=np.float64) / MAX_R, 1e-6, 1.0 - 1e-6)
    return np.log(fraction) - np.log1p(-fraction)


def check_parents(parents):
    """Parent dataset of each dataset (None for a root), each parent an earlier dataset.

    Parameters
    ----------
    parents : sequence of int or None

    Returns
    -------
    tuple of int
        ``-1`` for a root.

    Raises
    ------
    ValueError
        If a parent is not an earlier dataset (which also excludes cycles).
    """
    out = []
    for child, parent in enumerate(parents):
        if parent is None:
            out.append(-1)
        elif int(parent) != parent or not 0 <= parent < child:
            raise ValueError(f"the parent of dataset {child} must be None or an earlier dataset, got {parent}")
        else:
            out.append(int(parent))
    return tuple(out)


def resolution_shells(inverse_d2, n_shells):
    """Equal-count resolution shells of reflections, lowest resolution (smallest ``1/d^2``) first.

    The reflections sorted by ``1/d^2`` (ties in their given order) are cut
    into ``n_shells`` runs of equal length (the first ones one longer when
    the count does not divide), as :func:`numpy.array_split` cuts them.

    Parameters
    ----------
    inverse_d2 : array-like of float
        ``[n]`` 1/d² of each reflection.
    n_shells : int
        At least 1.

    Returns
    -------
    numpy.ndarray of int32
        ``[n]`` shell of each reflection in ``0 .. n_shells - 1``.
    """
    n_shells = int(n_shells)
    if n_shells < 1:
        raise ValueError(f"the number of resolution shells must be at least 1, got {n_shells}")
    inverse_d2 = np.asarray(inverse_d2, dtype=np.float64)
    shells = np.zeros(len(inverse_d2), dtype=np.int32)
    for shell, rows in enumerate(np.array_split(np.argsort(inverse_d2, kind="stable"), n_shells)):
        shells[rows] = shell
    return shells


def _check_shells(shells, n_hkl, n_shells):
    """``shells`` as int32 ``[n_hkl]`` in ``0 .. n_shells - 1`` (ValueError otherwise)."""
    values = np.asarray(shells)
    if values.shape != (n_hkl,):
        raise ValueError(f"shells must have shape ({n_hkl},), got {values.shape}")
    if not np.issubdtype(values.dtype, np.integer):
        raise ValueError(f"shells must be integers, got {values.dtype}")
    if values.size and not (values.min() >= 0 and values.max() < n_shells):
        raise ValueError(f"shells must lie in 0..{n_shells - 1}, got {values.min()}..{values.max()}")
    return values.astype(np.int32)


@keras.saving.register_keras_serializable(package="careless_online")
class DoubleWilsonCoupling(keras.layers.Layer):
    """The amplitude prior of related datasets: Wilson for roots, double-Wilson for children.

    Structure factors of dataset ``d`` and unique reflection ``h`` have the
    combined id ``d * n_hkl + h``.  The KL term of an observation of
    ``(d, h)`` is the Monte Carlo estimate of
    ``E_q[log q(F_dh) - log p(F_dh | F_{parent(d) h}, r_{d, s(h)})]`` with the
    parent's amplitude drawn from its own surrogate posterior (reparameterized,
    so the parent's posterior feels the coupling), and the plain Wilson
    ``log p(F_dh)`` for a root.  Summed with each ``(d, h)`` weighted by
    ``1 / n_dh`` over an epoch this is the KL of the joint prior
    ``prod_d p(F_d | F_parent(d))``.  ``s(h)`` is the resolution shell of
    reflection ``h`` (one shell unless ``shells`` says otherwise) and
    ``r_{d, s} = MAX_R sigmoid(logit_{d, s})``; with ``learn_r`` the logits
    are trained with the rest of the ELBO (empirical Bayes, one ``r`` per
    dataset and shell).

    Parameters
    ----------
    n_hkl : int
        Unique reflections per dataset.
    parents : sequence of int or None
        Parent of each dataset (see :func:`check_parents`).
    r : float or sequence of float
        Starting (or fixed) correlation of each dataset with its parent, the
        same in every shell (roots ignore it).
    learn_r : bool
        Learn ``r`` by empirical Bayes.
    shells : array-like of int, optional
        ``[n_hkl]`` resolution shell of each unique reflection, ``0 ..
        n_shells - 1`` (e.g. :func:`resolution_shells`).  Kept as a weight:
        a layer rebuilt from its config gets it back with the saved weights
        (or from :meth:`set_shells`).
    n_shells : int, optional
        Number of shells (default: ``max(shells) + 1``, or 1 without ``shells``).
    reindexed : bool
        Keep a table ``[n_datasets, n_hkl]`` of the parent's reflection of each
        child reflection (``--double-wilson-reindexing-ops``, set by
        :meth:`set_parent_table`); otherwise a child's reflection ``h`` has
        the parent's ``h``.

    Raises
    ------
    ValueError
        For ``n_hkl`` or ``n_shells`` below 1, bad parents, an ``r`` outside
        ``[0, MAX_R]`` or ``shells`` of the wrong shape or range.
    """

    def __init__(self, n_hkl, parents, r=0.0, learn_r=False, shells=None, n_shells=None, reindexed=False, **kwargs):
        super().__init__(**kwargs)
        self.n_hkl = int(n_hkl)
        if self.n_hkl < 1:
            raise ValueError(f"n_hkl must be at least 1, got {n_hkl}")
        self.parents = check_parents(parents)
        r = np.broadcast_to(np.asarray(r, dtype=np.float64), (len(self.parents),)).copy()
        if not np.all((r >= 0) & (r <= MAX_R)):
            raise ValueError(f"double-Wilson r must lie in [0, {MAX_R}], got {r.tolist()}")
        if n_shells is None:
            n_shells = 1 if shells is None or len(shells) == 0 else int(np.max(shells)) + 1
        if int(n_shells) != n_shells or n_shells < 1:
            raise ValueError(f"n_shells must be an integer of at least 1, got {n_shells}")
        self.n_shells = int(n_shells)
        self.initial_r = r.tolist()
        self.learn_r = bool(learn_r)
        start = np.repeat(logit_from_r(r)[:, None], self.n_shells, axis=1).astype(np.float32)
        self.r_logit = self.add_weight(name="r_logit", shape=(len(self.parents), self.n_shells),
                                       trainable=self.learn_r, initializer=keras.initializers.Constant(start))
        # one shell needs no assignment (and keeps the weights of models saved before shells existed)
        self.shell = (self.add_weight(name="shell", shape=(self.n_hkl,), dtype="int32", trainable=False,
                                      initializer="zeros") if self.n_shells > 1 else None)
        if shells is not None:
            self.set_shells(shells)
        self.parent_table = None
        if reindexed:
            self.parent_table = self.add_weight(name="parent_table", shape=(len(self.parents), self.n_hkl),
                                                dtype="int32", trainable=False, initializer="zeros")
            self.parent_table.assign(np.tile(np.arange(self.n_hkl, dtype=np.int32), (len(self.parents), 1)))
        self.built = True

    def set_parent_table(self, table):
        """Set the parent's reflection of every child reflection (``[n_datasets, n_hkl]`` ids in ``0 .. n_hkl-1``)."""
        table = np.asarray(table, dtype=np.int32)
        if self.parent_table is None or table.shape != (len(self.parents), self.n_hkl):
            raise ValueError(f"parent table of shape {table.shape} for a coupling of "
                             f"{(len(self.parents), self.n_hkl)} reflections (made with reindexed=True?)")
        if table.min() < 0 or table.max() >= self.n_hkl:
            raise ValueError("parent table ids must lie in [0, n_hkl)")
        self.parent_table.assign(table)

    def _parent_hkl(self, dataset, hkl):
        """The parent's reflection of reflections ``hkl`` of child datasets ``dataset``."""
        if self.parent_table is None:
            return hkl
        return tf.gather_nd(self.parent_table, tf.stack([dataset, hkl], axis=1))

    @property
    def n_datasets(self):
        """Number of datasets."""
        return len(self.parents)

    def set_shells(self, shells):
        """Set the resolution shell of each unique reflection (``[n_hkl]`` ints in ``0 .. n_shells - 1``)."""
        shells = _check_shells(shells, self.n_hkl, self.n_shells)
        if self.shell is not None:
            self.shell.assign(shells)

    def r_per_shell(self):
        """``[n_datasets, n_shells]`` correlations with the parents in each resolution shell."""
        return r_from_logit(self.r_logit)

    def r(self):
        """``[n_datasets]`` correlations with the parents, averaged over the shells.

        With equal-count shells this is the mean ``r`` over the unique
        reflections; with one shell it is the dataset's ``r`` itself.
        """
        return tf.reduce_mean(self.r_per_shell(), axis=1)

    def _r_of(self, dataset, hkl):
        """``r_{d, s(h)}`` of reflections ``hkl`` of datasets ``dataset``."""
        shell = tf.zeros_like(hkl) if self.shell is None else tf.gather(self.shell, hkl)
        return tf.gather_nd(self.r_per_shell(), tf.stack([dataset, shell], axis=1))

    def kl(self, posterior, ids, samples, sigma, seed=None):
        """Per-observation KL estimate of the reflections ``ids`` (combined ids).

        Parameters
        ----------
        posterior : careless_online.distributions.StructureFactorPosterior
            Over ``n_datasets * n_hkl`` combined ids.
        ids : tf.Tensor
            int32 ``[n]`` combined ids.
        samples : tf.Tensor
            ``[mc, n]`` reparameterized samples of ``q(F_ids)`` (``mc`` static).
        sigma : tf.Tensor
            ``[n]`` Wilson Σ of those reflections.
        seed : tf.Tensor, optional
            Stateless seed of the parents' samples.

        Returns
        -------
        tf.Tensor
            ``[n]``.
        """
        F = tf.maximum(samples, _TINY_F)
        log_p = posterior.prior(ids, sigma).log_prob(F)
        dataset = ids // self.n_hkl
        parent = tf.gather(tf.constant(self.parents, tf.int32), dataset)
        # only children draw a parent (a root's draw would be wasted, and the
        # sampler's backward pass could still put a NaN into its gradient)
        children = tf.where(parent >= 0)[:, 0]
        child_ids = tf.gather(ids, children)
        parent_ids = tf.gather(parent, children) * self.n_hkl + self._parent_hkl(tf.gather(dataset, children),
                                                                                 child_ids % self.n_hkl)
        parent_samples = posterior.sample(parent_ids, int(samples.shape[0]), seed=seed)
        prior = DoubleWilsonPrior(tf.gather(posterior.centric, child_ids) > 0.5, tf.gather(posterior.epsilon, child_ids),
                                  parent_samples, self._r_of(tf.gather(dataset, children), child_ids % self.n_hkl),
                                  tf.gather(sigma, children), tf.gather(sigma, children))
        coupled = prior.log_prob(tf.gather(F, children, axis=1))
        log_p = tf.transpose(tf.tensor_scatter_nd_update(tf.transpose(log_p), children[:, None], tf.transpose(coupled)))
        return tf.reduce_mean(posterior.distribution(ids).log_prob(F) - log_p, axis=0)

    def get_config(self):
        config = super().get_config()
        config.update(n_hkl=self.n_hkl, parents=[None if p < 0 else p for p in self.parents],
                      r=self.initial_r, learn_r=self.learn_r, n_shells=self.n_shells,
                      reindexed=self.parent_table is not None)
        return config

    def load_own_variables(self, store):
        """Load the saved weights; a model saved before shells existed has ``r_logit`` of shape ``[n_datasets]``."""
        values = {str(i): np.asarray(store[str(i)]) for i in range(len(store))}
        if values and values["0"].shape == (self.n_datasets,):
            values["0"] = values["0"][:, None]
        super().load_own_variables(values)
