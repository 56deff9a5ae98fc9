"""The merging model: structure factors, scales and the ELBO of one batch of images.

For an observation ``i`` of unique reflection ``h(i)`` on image ``b(i)``:

- ``q(F_h) = TruncatedNormal(loc_h, scale_h, 0, inf)``, prior Wilson (acentric
  or centric, with the reflection's epsilon factor and ``Sigma(1/d^2)``, learned
  or from a fixed B: :mod:`careless_online.distributions.wilson_scale`);
- ``q(Sigma_i) = LogNormal(mu_i, s_i)`` with ``(mu_i, s_i) = ScaleHead(z_b, m_i)``,
  prior ``LogNormal(0, 1)``; ``z_b`` is the image vector that the
  :class:`~careless_online.layers.ImageEncoder` pools from the image's own
  observations ``(E[F_h], asinh(k I_i), asinh(k SigI_i), m_i)``;
  with a partiality prior (``partiality_prior``, ``--partiality-prior ewald``)
  ``mu_i = ScaleHead(...) + log P_i - c`` and the prior is
  ``LogNormal(log P_i - c, 1)``, where ``P_i`` is the physical partiality of
  a still at the observation's raw Ewald offset
  (:class:`~careless_online.layers.PartialityPrior`, widths learned): the
  KL is that of the network's residual, ``KL(N(ScaleHead_mu, s) || N(0, 1))``;
- likelihood ``k I_i ~ Normal(Sigma_i F_h^2, k SigI_i)`` (or Student-t), where
  ``k = k0 softplus(kappa)`` is a learned positive constant and ``k0`` puts the
  intensities on the unit scale of the Wilson prior at the start.

The loss of a batch is minus its share of the ELBO::

    loss = - sum_i E_q[log p(k I_i | Sigma_i, F_h)]
           + w_Sigma sum_i KL(q(Sigma_i) || p(Sigma))
           + w_F     sum_i KL(q(F_h) || p(F_h)) / n_h

where ``n_h`` counts the training observations of reflection ``h``: summed
over an epoch the F term is each reflection's KL once, so the per-step losses
add up to the full-data ELBO.  Expectations use reparameterized samples; the
scale KL is analytic.

Several datasets (``n_datasets > 1``) share the scale network, ``k`` and the
prior's ``Sigma(1/d^2)``; each has its own ``q(F_dh)``, indexed by the combined
id ``d n_hkl + h`` (:mod:`careless_online.model.datasets`), and ``n_h`` becomes
``n_dh``, the training observations of reflection ``h`` in dataset ``d``.  With
``double_wilson_parents`` a child dataset's prior is the double-Wilson
``p(F_dh | F_parent(d)h, r_d)`` (:class:`~careless_online.distributions.double_wilson.DoubleWilsonCoupling`;
its KL is the Monte Carlo estimate at the reparameterized samples of the
child and of its parent), roots keep the Wilson prior; with
``double_wilson_r_shells`` each equal-count resolution shell has its own ``r``.
"""

import json

import keras
import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from careless_online.checks import integer_at_least, non_negative, positive
from careless_online.distributions import StructureFactorPosterior
from careless_online.distributions.double_wilson import DoubleWilsonCoupling, resolution_shells
from careless_online.distributions.likelihood import check_dof, intensity_log_likelihood
from careless_online.distributions.scales import scale_distribution, scale_kl
from careless_online.distributions.wilson_scale import WilsonSigma
from careless_online.model.datasets import dataset_reflection_ids, hkl_ids, per_dataset
from careless_online.model.error_model import ErrorModel
from careless_online.model.settings import SettingChoice, reindexed_batch
from careless_online.layers import ImageEncoder, PartialityPrior, PositionalEncoding, ScaleHead


#: Number of encoder input features besides the metadata.
_N_OBS_FEATURES = 3

#: How the scale network sees the scaled intensities (saved in the config:
#: models saved with linear features, before issue 14's fix, are refused).
INTENSITY_FEATURES = "asinh"


@keras.saving.register_keras_serializable(package="careless_online")
class MergingModel(keras.Model):
    """Structure factors, scale network and likelihood of a merge.

    Parameters
    ----------
    n_reflections : int
        Unique reflections (the size of the reflection index) of one dataset.
    n_meta : int
        Number of metadata columns.
    centric, epsilon : array-like, optional
        Per-reflection centric flags and epsilon factors (saved as weights).
    d_model : int
        Width of the encoder and scale networks.
    d_ff : int, optional
        Hidden width of the feed-forward blocks (default ``2 * d_model``).
    encoder_layers, scale_layers : int
        ResNet blocks in the image encoder and the scale head.
    activation : str
        Keras activation of the blocks.
    studentt_dof : float, optional
        Degrees of freedom of a Student-t likelihood (None: Normal).
    mc_samples : int
        Samples of F and Sigma per observation and step.
    kl_weight, scale_kl_weight : float
        ``w_F`` and ``w_Sigma``.
    intensity_scale : float
        ``k0``: initial factor putting the intensities on the prior's scale.
    index_config, standardizer_config : dict
        The reflection index and metadata standardization (saved with the model).
    inverse_d2 : array-like, optional
        ``[n_reflections]`` 1/d² of each reflection (saved as weights); without
        it the Wilson prior is flat (``Sigma = 1``).
    wilson_prior_b : float, optional
        Fixed Wilson B (Å²) of the prior's ``Sigma(1/d^2)``; None learns the
        curve (see :class:`~careless_online.distributions.wilson_scale.WilsonSigma`).
    wilson_knots : int
        Knots of the learned curve.
    wilson_max_inverse_d2 : float, optional
        1/d² of the last knot (taken from ``inverse_d2`` when given; kept in the config).
    refine_uncertainties : bool
        Learn an error model of the input uncertainties
        (:class:`~careless_online.model.error_model.ErrorModel`).
    intensity_features : str
        Must be :data:`INTENSITY_FEATURES` (kept in the config so that an
        older model, whose network expects other features, is refused).
    resolution_feature : bool
        Give both networks each observation's ``s^2 = (1/d^2) / max(1/d^2)``
        beside the metadata (see :meth:`scale_parameters`); False only for
        models saved before it existed.
    n_datasets : int
        Datasets with their own structure factors (batches say each
        observation's dataset in ``batch["dataset"]``).
    double_wilson_parents : sequence of int or None, optional
        Parent of each dataset (None for a root); None: independent Wilson priors.
    double_wilson_r : float or sequence of float
        Correlation of each dataset with its parent (fixed, or the start of learning).
    learn_double_wilson_r : bool
        Learn the correlations (empirical Bayes).
    double_wilson_r_shells : int
        Equal-count resolution shells in 1/d² (from ``inverse_d2``) with
        their own ``r`` each (1: one ``r`` per dataset).
    reindexing_ops : list of str, optional
        hkl triplets of the indexing settings, identity first; with two or
        more, every image's setting is chosen by a
        :class:`~careless_online.model.settings.SettingChoice` (its
        reflection table is set by :func:`careless_online.model.build.new_model`).
    positional_encoding : dict, optional
        Config of a :class:`~careless_online.layers.PositionalEncoding` of
        metadata columns (``--positional-encoding-keys``); the networks see its output.
    image_scales : bool
        Feed the image vector to the scale head; False (``--disable-image-scales``)
        gives it zeros, so scales follow from the metadata alone.
    double_wilson_reindexing_ops : list of str, optional
        Per dataset, the hkl operator that gives its parent's reflection
        (:mod:`careless_online.model.parent_settings`).
    partiality_prior : dict, optional
        Config (``r``, ``eta``, ``tau``, ``offset``, ``per_image``) of a
        :class:`~careless_online.layers.PartialityPrior`: the mean of the
        scales' prior and the start of their posterior is ``log P_i - c``
        (batches then carry the raw ``ewald_offset``); None: mean 0 (models
        saved before it existed, and data without Ewald offsets).  With
        ``per_image`` a dense layer (``partiality_width``, zero kernel) maps
        each image vector to ``delta_b``, its log mosaic-spread factor.
    """

    def __init__(self, n_reflections, n_meta, centric=None, epsilon=None, d_model=32, d_ff=None,
                 encoder_layers=2, scale_layers=2, activation="relu", studentt_dof=None, mc_samples=1,
                 kl_weight=1.0, scale_kl_weight=1.0, intensity_scale=1.0, index_config=None,
                 standardizer_config=None, inverse_d2=None, wilson_prior_b=None, wilson_knots=8,
                 wilson_max_inverse_d2=None, refine_uncertainties=False, intensity_features=INTENSITY_FEATURES,
                 resolution_feature=True,
                 n_datasets=1, double_wilson_parents=None, double_wilson_r=0.0, learn_double_wilson_r=False,
                 double_wilson_r_shells=1, reindexing_ops=None, positional_encoding=None, image_scales=True,
                 double_wilson_reindexing_ops=None, partiality_prior=None, **kwargs):
        super().__init__(**kwargs)
        if intensity_features != INTENSITY_FEATURES:
            raise ValueError(f"the model feeds '{intensity_features}' intensity features to its scale network; "
                             f"this version uses '{INTENSITY_FEATURES}' (a model saved before issue 14's fix): retrain it")
        self.intensity_features = INTENSITY_FEATURES
        self.resolution_feature = bool(resolution_feature)
        self.n_reflections = integer_at_least("n_reflections", n_reflections, 1)
        self.n_meta = integer_at_least("n_meta", n_meta, 0)
        self.d_model = integer_at_least("d_model", d_model, 1)
        self.d_ff = integer_at_least("d_ff", d_ff, 1) if d_ff else 2 * self.d_model
        self.encoder_layers = integer_at_least("encoder_layers", encoder_layers, 0)
        self.scale_layers = integer_at_least("scale_layers", scale_layers, 0)
        self.activation = activation
        self.studentt_dof = check_dof(studentt_dof)
        self.mc_samples = integer_at_least("mc_samples", mc_samples, 1)
        self.kl_weight = non_negative("kl_weight", kl_weight)
        self.scale_kl_weight = non_negative("scale_kl_weight", scale_kl_weight)
        self.intensity_scale = positive("intensity_scale", intensity_scale)
        self.index_config = index_config
        self.standardizer_config = standardizer_config
        self.n_datasets = integer_at_least("n_datasets", n_datasets, 1)
        self.positional = (PositionalEncoding(**positional_encoding, name="positional_encoding")
                           if positional_encoding else None)
        self.image_scales = bool(image_scales)
        self.double_wilson_reindexing_ops = double_wilson_reindexing_ops
        self.structure_factors = StructureFactorPosterior(
            self.n_datasets * self.n_reflections, centric=per_dataset(centric, self.n_datasets),
            epsilon=per_dataset(epsilon, self.n_datasets), name="structure_factors")
        self.coupling = self._coupling(double_wilson_parents, double_wilson_r, learn_double_wilson_r,
                                       double_wilson_r_shells, inverse_d2)
        self.reindexing_ops = [str(t) for t in reindexing_ops] if reindexing_ops else None
        self.setting_choice = (SettingChoice(self.n_reflections, self.reindexing_ops, name="setting_choice")
                               if self.reindexing_ops and len(self.reindexing_ops) > 1 else None)
        self.encoder = ImageEncoder(self.d_model, self.d_ff, self.encoder_layers, activation,
                                    n_features=_N_OBS_FEATURES + self._n_scale_meta, name="encoder")
        self.scale_head = ScaleHead(self.d_model, self.d_ff, self.scale_layers, activation,
                                    d_image=self.d_model, n_meta=self._n_scale_meta, name="scale_head")
        self.refine_uncertainties = bool(refine_uncertainties)
        self.error_model = ErrorModel(name="error_model") if self.refine_uncertainties else None
        self.wilson_sigma = self._wilson_sigma(inverse_d2, wilson_prior_b, wilson_knots, wilson_max_inverse_d2)
        if partiality_prior is not None and not isinstance(partiality_prior, dict):
            raise ValueError(f"partiality_prior must be a dict of PartialityPrior parameters or None, "
                             f"got {partiality_prior!r}")
        self.partiality = (PartialityPrior(**partiality_prior, name="partiality") if partiality_prior else None)
        self.partiality_width = None
        if self.partiality is not None and self.partiality.per_image:
            self.partiality_width = keras.layers.Dense(1, kernel_initializer="zeros", name="partiality_width")
            self.partiality_width.build((None, self.d_model))
        self.kappa = self.add_weight(name="kappa", shape=(), trainable=True,
                                     initializer=keras.initializers.Constant(float(tfp.math.softplus_inverse(1.0))))
        self.kl_inverse_counts = self.add_weight(name="kl_inverse_counts",
                                                 shape=(self.n_datasets * self.n_reflections,),
                                                 initializer="ones", trainable=False)
        self.built = True

    # ------------------------------------------------------------------ set-up
    def _wilson_sigma(self, inverse_d2, b_factor, knots, max_inverse_d2):
        """The prior's Σ(1/d²) (learned, or a fixed B); flat while 1/d² is unknown."""
        if inverse_d2 is not None:
            max_inverse_d2 = float(np.max(inverse_d2)) if len(inverse_d2) else 1.0
        layer = WilsonSigma(self.n_reflections, max_inverse_d2 or 1.0, knots, b_factor, name="wilson_sigma")
        if inverse_d2 is not None:
            layer.set_resolution(inverse_d2)
        return layer

    def _coupling(self, parents, r, learn_r, n_shells, inverse_d2):
        """The double-Wilson coupling of the datasets, or None for independent Wilson priors.

        Its ``r`` shells are equal-count shells of ``inverse_d2`` (absent when
        a saved model is rebuilt: the shells come back with its weights).
        """
        n_shells = integer_at_least("double_wilson_r_shells", n_shells, 1)
        if parents is None:
            if n_shells > 1:
                raise ValueError("double_wilson_r_shells needs double_wilson_parents")
            return None
        if len(parents) != self.n_datasets:
            raise ValueError(f"double_wilson_parents names {len(parents)} datasets, the model has {self.n_datasets}")
        shells = None if inverse_d2 is None or n_shells == 1 else resolution_shells(inverse_d2, n_shells)
        return DoubleWilsonCoupling(self.n_reflections, parents, r, learn_r, shells=shells, n_shells=n_shells,
                                    reindexed=self.double_wilson_reindexing_ops is not None, name="double_wilson")

    def set_reflection_counts(self, counts):
        """Set ``n_dh``, the training observations of each (dataset, reflection) (for the F KL weight).

        ``counts`` is indexed by the combined id ``d n_hkl + h``.
        """
        counts = np.asarray(counts, dtype=np.float64)
        if self.setting_choice is not None:  # images move between settings: the expected counts
            counts = self.setting_choice.orbit_mean(counts)
        self.kl_inverse_counts.assign(np.where(counts > 0, 1.0 / np.maximum(counts, 1), 0.0).astype(np.float32))

    def build_from_config(self, config):
        """All weights exist after ``__init__``; nothing to build."""

    @property
    def _n_scale_meta(self):
        """Per-observation inputs of the networks besides the intensity features."""
        n_meta = self.n_meta if self.positional is None else self.positional.n_features
        return n_meta + int(self.resolution_feature)

    @property
    def k(self):
        """The positive intensity scale ``k``."""
        return self.intensity_scale * tf.nn.softplus(self.kappa)

    # ------------------------------------------------------------------ pieces
    def in_reference_setting(self, batch, update=False):
        """The batch with every image's observations in its chosen indexing setting, and the choice.

        Without a setting choice the batch is returned as it is (and None).
        Otherwise ``refl_id`` becomes each observation's id in the reference
        setting (:func:`~careless_online.model.settings.reindexed_batch`),
        the step that precedes everything else that reads ``refl_id``.

        Parameters
        ----------
        batch : dict of tf.Tensor
        update : bool
            Add the batch to the choice's reference (training steps only).

        Returns
        -------
        (dict, dict or None)
            The batch and :meth:`SettingChoice.call`'s result.
        """
        if self.setting_choice is None:
            return batch, None
        choice = self.setting_choice(batch["I"], batch["image"], batch["n_images"], batch["refl_id"], update=update)
        return reindexed_batch(batch, choice["ids"]), choice

    def reflection_ids(self, batch):
        """Combined ``(dataset, reflection)`` id of each observation of a batch.

        The cache's ``refl_id`` (the unique reflection) plus the dataset
        offset (:func:`~careless_online.model.datasets.dataset_reflection_ids`);
        batches without a ``dataset`` entry are one dataset.
        """
        return dataset_reflection_ids(batch["refl_id"], batch.get("dataset"), self.n_reflections)

    def scale_parameters(self, batch):
        """(loc, scale) of ``q(Sigma)`` for each observation of a batch.

        The encoder sees the scaled intensities through ``asinh`` (linear
        near zero, ``log(2x)`` for large ``x``, odd for negative ``I``):
        intensities are heavy-tailed (one reflection of an image can be a
        thousand times its mean), the ReLU networks are positively
        homogeneous, and ``loc`` is a log scale.  Fed linearly, one strong
        observation drove its whole image's ``log Sigma`` to 23 (issue 14:
        a NLL of 1e24, gradients of 1e28 whose squared norm overflowed
        float32); through ``asinh`` it moves it by a logarithm.

        Beside the user's metadata ``m_i`` both networks see
        ``s_i^2 = (1/d_i^2) / max(1/d^2)`` in [0, 1]: a resolution fall-off
        ``exp(-B s^2 / 2)`` is linear in it, so a ReLU network represents
        it at every resolution, whereas ``dHKL`` (the usual metadata key)
        spans 2 to 50 Å with its low-resolution tail far outside the
        standardized range.  Measured on the 2,000-image benchmark set:
        shell means of F against the truth flat within ±2.5 % instead of
        ±4.0 %, rms z of SIGF 2.3 instead of 4.2 (benchmarks/README.md).

        With a partiality prior the returned ``loc`` is the network's plus
        :meth:`scale_prior_mean` (so the posterior starts at the prior's mean).
        """
        loc, scale, _ = self._scale_posterior(batch)
        return loc, scale

    def _image_vectors(self, batch, meta):
        """The encoder's vector of each image of a batch (zeros without image scales), ``[n_images, d_model]``."""
        if not self.image_scales:
            return tf.zeros([batch["n_images"], self.d_model])
        k = self.k
        f_mean = tf.stop_gradient(self.structure_factors.distribution(self.reflection_ids(batch)).mean())
        features = tf.concat([
            tf.stack([f_mean, tf.asinh(k * batch["I"]), tf.asinh(k * batch["SigI"])], axis=-1),
            meta,
        ], axis=-1)
        return self.encoder(features, batch["image"], batch["n_images"])

    def _scale_posterior(self, batch):
        """``(loc, scale)`` of ``q(Sigma)`` and the prior's mean of ``log Sigma`` (see :meth:`scale_parameters`)."""
        meta = self._scale_meta(batch)
        image_vectors = self._image_vectors(batch, meta)
        loc, scale = self.scale_head(image_vectors, batch["image"], meta)
        mean = self.scale_prior_mean(batch, image_vectors)
        if self.partiality is not None:
            loc = loc + mean
        return loc, scale, mean

    def scale_prior_mean(self, batch, image_vectors=None):
        """Mean of the prior of each ``log Sigma_i``: ``log P_i - c``, or 0 without a partiality prior.

        ``P_i`` from the batch's raw ``ewald_offset`` and the 1/d² of the
        observation's reflection (:class:`~careless_online.layers.PartialityPrior`);
        with per-image widths, ``eta`` of image ``b`` is ``eta exp(delta_b)``,
        ``delta_b`` a linear function of its image vector (``image_vectors``,
        computed here when not given) that starts at 0.
        """
        if self.partiality is None:
            return tf.zeros_like(batch["I"])
        if "ewald_offset" not in batch:
            raise ValueError("the model's scale prior needs each observation's Ewald offset: these data have no "
                             "ewald_offset column")
        hkl = hkl_ids(batch["refl_id"], self.n_reflections)
        inverse_d2 = tf.gather(self.wilson_sigma.inverse_d2, hkl)
        log_width = None
        if self.partiality_width is not None:
            if image_vectors is None:
                image_vectors = self._image_vectors(batch, self._scale_meta(batch))
            log_width = tf.gather(self.partiality_width(image_vectors)[:, 0], batch["image"])
        return self.partiality(batch["ewald_offset"], inverse_d2, log_width)

    def _scale_meta(self, batch):
        """The metadata of each observation (positionally encoded, if so), with its ``s^2``.

        ``s^2`` only when :attr:`resolution_feature`.
        """
        meta = batch["meta"] if self.positional is None else self.positional(batch["meta"])
        if not self.resolution_feature:
            return meta
        hkl = hkl_ids(batch["refl_id"], self.n_reflections)
        s2 = tf.gather(self.wilson_sigma.inverse_d2, hkl) / self.wilson_sigma.max_inverse_d2
        return tf.concat([meta, s2[:, None]], axis=-1)

    def log_likelihood(self, prediction, batch):
        """``log p(I | Sigma, F)`` of each observation for predicted ``Sigma F^2`` samples.

        See :mod:`careless_online.distributions.likelihood`; the width of
        ``k I`` is ``k SigI``, refined by the error model when there is one.
        """
        return self.measured_log_likelihood(prediction, batch["I"], batch["SigI"])

    def measured_log_likelihood(self, prediction, intensity, sigma):
        """``log p(I | prediction)`` of measured intensities ``I +- SigI`` (``[n]``) for ``[..., n]`` predictions.

        The width of ``k I`` is ``k SigI``, refined by the error model when there is one.
        """
        k = self.k
        width = k * sigma
        if self.error_model is not None:
            width = self.error_model(width, prediction)
        return intensity_log_likelihood(prediction, intensity, width, k, self.studentt_dof)

    def _sampled_log_likelihood(self, batch, seed=None, scale_parameters=None):
        """Monte Carlo samples of the log-likelihood of a batch, and what they were drawn from.

        Draws ``mc_samples`` reparameterized ``F_h`` and ``Sigma_i`` (two
        streams split from ``seed``) and evaluates :meth:`log_likelihood` of
        each observation at ``Sigma_i F_h^2``.

        Returns
        -------
        (tf.Tensor, tf.Tensor, (tf.Tensor, tf.Tensor))
            Log-likelihoods ``[mc, n]``, the F samples ``[mc, n]`` and the
            ``(loc, scale)`` of ``q(Sigma)``.
        """
        seed_f, seed_sigma = tfp.random.split_seed(seed, 2) if seed is not None else (None, None)
        F = self.structure_factors.sample(self.reflection_ids(batch), self.mc_samples, seed=seed_f)
        loc, scale = self.scale_parameters(batch) if scale_parameters is None else scale_parameters
        sigma = scale_distribution(loc, scale).sample(self.mc_samples, seed=seed_sigma)
        return self.log_likelihood(sigma * tf.square(F), batch), F, (loc, scale)

    def loss_terms(self, batch, seed=None):
        """The pieces of minus the ELBO of one batch.

        Parameters
        ----------
        batch : dict of tf.Tensor
            As produced by :class:`careless_online.io.pipeline.ImageBatches`.
        seed : tf.Tensor, optional
            int32 ``[2]`` stateless seed of the Monte Carlo samples (the
            training loop derives it from the run seed and the step, so a
            resumed run draws exactly the samples an uninterrupted one would).

        Returns
        -------
        dict of scalar tf.Tensor
            ``loss``, ``NLL`` (summed expected negative log-likelihood),
            ``KL_F`` (weighted), ``KL_Sigma`` and ``n_obs``.
        """
        batch, _ = self.in_reference_setting(batch, update=True)
        ids = self.reflection_ids(batch)
        loc, scale, prior_mean = self._scale_posterior(batch)
        log_p, F, _ = self._sampled_log_likelihood(batch, seed, (loc, scale))
        nll = -tf.reduce_mean(log_p, axis=0)
        kl_f = self.structure_factor_kl(ids, F, seed)
        kl_sigma = scale_kl(loc - prior_mean, scale)
        kl_f = kl_f * tf.gather(self.kl_inverse_counts, ids)
        terms = {
            "NLL": tf.reduce_sum(nll),
            "KL_F": tf.reduce_sum(kl_f),
            "KL_Sigma": tf.reduce_sum(kl_sigma),
            "n_obs": tf.cast(tf.size(ids), tf.float32),
        }
        terms["loss"] = terms["NLL"] + self.kl_weight * terms["KL_F"] + self.scale_kl_weight * terms["KL_Sigma"]
        return terms

    def structure_factor_kl(self, ids, F, seed=None):
        """Monte Carlo ``KL(q(F) || prior)`` of each observation's reflection (unweighted).

        The Wilson prior, or the double-Wilson coupling given a draw of the
        parent dataset's ``F`` (its seed folded from ``seed``, apart from the
        likelihood's streams).
        """
        sigma = self.wilson_sigma(hkl_ids(ids, self.n_reflections))
        if self.coupling is None:
            return self.structure_factors.kl_to_prior(ids, F, sigma=sigma)
        parent_seed = None if seed is None else tf.random.experimental.stateless_fold_in(seed, 3)
        return self.coupling.kl(self.structure_factors, ids, F, sigma, seed=parent_seed)

    def predict_intensities(self, batch, scale_parameters=None):
        """Posterior predictive mean and std of each observation's intensity (in input units).

        Exact moments of ``Sigma * F**2 / k`` under the independent posteriors:
        ``E[Sigma]``, ``E[Sigma**2]`` of the LogNormal and the raw moments of
        the truncated normal from ``m_j = mu m_{j-1} + (j-1) s**2 m_{j-2}``
        (the recursion for a normal truncated at zero), so no sampling noise.

        Parameters
        ----------
        batch : dict of tf.Tensor
        scale_parameters : (tf.Tensor, tf.Tensor), optional
            ``(loc, scale)`` of ``q(Sigma)`` if already computed for this batch.

        Returns
        -------
        (tf.Tensor, tf.Tensor)
            ``Ipred`` and ``SigIpred``, float32 ``[n]``.
        """
        loc, scale = self.scale_parameters(batch) if scale_parameters is None else scale_parameters
        sigma_1 = tf.exp(loc + 0.5 * tf.square(scale))
        sigma_2 = tf.exp(2.0 * loc + 2.0 * tf.square(scale))
        q = self.structure_factors.distribution(self.reflection_ids(batch))
        mu, var = q.loc, tf.square(q.scale)
        m1 = q.mean()
        m2 = mu * m1 + var
        m3 = mu * m2 + 2.0 * var * m1
        m4 = mu * m3 + 3.0 * var * m2
        mean = sigma_1 * m2
        std = tf.sqrt(tf.nn.relu(sigma_2 * m4 - tf.square(mean)))
        return mean / self.k, std / self.k

    def nll_per_observation(self, batch, seed=None, scale_parameters=None):
        """Expected negative log-likelihood of each observation (held-out scoring).

        ``scale_parameters`` as in :meth:`predict_intensities`.
        """
        log_p, _, _ = self._sampled_log_likelihood(batch, seed, scale_parameters)
        return -tf.reduce_mean(log_p, axis=0)

    def call(self, batch):
        """Predicted intensities of a batch in its images' chosen settings (see :meth:`predict_intensities`)."""
        return self.predict_intensities(self.in_reference_setting(batch)[0])

    def get_config(self):
        config = super().get_config()
        config.update(
            n_reflections=self.n_reflections, n_meta=self.n_meta, d_model=self.d_model, d_ff=self.d_ff,
            encoder_layers=self.encoder_layers, scale_layers=self.scale_layers, activation=self.activation,
            studentt_dof=self.studentt_dof, mc_samples=self.mc_samples, kl_weight=self.kl_weight,
            scale_kl_weight=self.scale_kl_weight, intensity_scale=self.intensity_scale,
            index_config=json.dumps(self.index_config), standardizer_config=json.dumps(self.standardizer_config),
            wilson_prior_b=self.wilson_sigma.b_factor, wilson_knots=self.wilson_sigma.knots,
            wilson_max_inverse_d2=self.wilson_sigma.max_inverse_d2, refine_uncertainties=self.refine_uncertainties,
            intensity_features=self.intensity_features, resolution_feature=self.resolution_feature,
            n_datasets=self.n_datasets,
            reindexing_ops=self.reindexing_ops,
            positional_encoding=None if self.positional is None else {
                k: v for k, v in self.positional.get_config().items()
                if k in ("n_meta", "encoded", "kept", "low", "high", "frequencies")},
            image_scales=self.image_scales, double_wilson_reindexing_ops=self.double_wilson_reindexing_ops,
            partiality_prior=None if self.partiality is None else {
                k: v for k, v in self.partiality.get_config().items()
                if k in ("r", "eta", "tau", "offset", "per_image")},
            **self._coupling_config(),
        )
        return config

    def _coupling_config(self):
        if self.coupling is None:
            return {}
        config = self.coupling.get_config()
        return dict(double_wilson_parents=config["parents"], double_wilson_r=config["r"],
                    learn_double_wilson_r=config["learn_r"], double_wilson_r_shells=config["n_shells"])

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config.setdefault("intensity_features", "linear")  # saved before the key existed
        config.setdefault("resolution_feature", False)  # saved before the networks saw s^2
        for key in ("index_config", "standardizer_config"):
            if isinstance(config.get(key), str):
                config[key] = json.loads(config[key])
        return cls(**config)
