"""``careless_online mono``: merge monochromatic serial data, careless-style.

Positional arguments as in careless: the comma-separated metadata keys, one
or more input files, and the output prefix.  Flags keep careless's names
where they mean the same; online-specific flags (batch size, checkpoints,
live mode, caching) follow the same style.
"""

import contextlib
import os

from careless_online.cli import checks
from careless_online.cli.common import no_new_empty_folders
from careless_online.cli.parser import (Parser, fraction, non_negative_float, non_negative_int, number,
                                        positive_float, positive_int)
from careless_online.cli.tf_runtime import import_tensorflow
from careless_online.errors import InputError
from careless_online.io.layout import DEFAULT_LAYOUT, LAYOUTS


def add_arguments(parser):
    """Add the ``mono`` arguments, grouped by concern, to ``parser``."""
    parser.add_argument("metadata_keys", help="comma-separated metadata keys, e.g. "
                        "'dHKL,XDET,YDET,ewald_offset' (dHKL is used as 1/d^2; also image_id, file_id, "
                        "Hobs,Kobs,Lobs and any column of the inputs)")
    parser.add_argument("inputs", nargs="+", help="unmerged .mtz, CrystFEL .stream, or DIALS .expt/.refl files")
    parser.add_argument("out", help="output prefix, e.g. merge/hewl (writes merge/hewl_0.mtz ...)")

    g = parser.add_argument_group("interpretation")
    g.add_argument("--anomalous", action="store_true", help="keep Friedel mates as separate reflections")
    g.add_argument("--spacegroups", default=None,
                   help="space group for all files, or one per file separated by commas (streams need it)")
    g.add_argument("--cell", default=None, help="unit cell override 'a,b,c,alpha,beta,gamma'")
    g.add_argument("--separate-files", action="store_true",
                   help="one dataset per input file: one model (one scale network) with separate structure "
                        "factors per file, written to <out>_<i>.mtz in file order")
    g.add_argument("--groups", default=None, metavar="KEY",
                   help="one dataset per distinct value of this per-image column (e.g. file_id, or a run "
                        "column of an MTZ), in increasing order; one model, outputs <out>_<i>.mtz")
    g.add_argument("--groups-file", default=None, metavar="PATH",
                   help="datasets from a split file (like partialator --custom-split): lines "
                        "'<input file> <image or *> <dataset name>' (image: a stream's crystal position from 0, an MTZ's "
                        "BATCH), datasets numbered in order of "
                        "first appearance, unlisted images left out (docs/time_resolved.md)")
    g.add_argument("--intensity-key", default=None, help="MTZ intensity column (default: I/IMEAN/IOBS)")
    g.add_argument("--uncertainty-key", default=None, help="MTZ sigma column (default: SIGI/SigI/SIGIMEAN)")
    g.add_argument("--image-key", default=None, help="MTZ image column (default: BATCH)")
    g.add_argument("--reindexing-ops", default="auto",
                   help="indexing settings a still may be in (indexing ambiguity): auto = the lattice's twin laws "
                        "(on when the lattice has more symmetry than the space group), none = every image as "
                        "indexed, or ';'-separated hkl operators such as 'k,h,-l'; the model chooses each image's "
                        "setting and writes the merge in the one most images were indexed in (docs/ambiguity.md)")

    g = parser.add_argument_group("filtration")
    g.add_argument("-d", "--dmin", type=positive_float, default=None, help="high-resolution cut in Angstrom (default: the data's)")
    g.add_argument("-c", "--isigi-cutoff", type=number(float), default=None, help="drop observations with I/SigI below this")
    g.add_argument("--cell-tolerance", type=positive_float, default=0.05,
                   help="drop images whose cell lengths deviate by more than this fraction")
    g.add_argument("--drop-invalid", action="store_true",
                   help="drop observations with NaN intensity or non-positive sigma instead of refusing the file")

    g = parser.add_argument_group("optimizer")
    g.add_argument("--iterations", type=positive_int, default=4000,
                   help="gradient steps (one batch of images each); 4000 reach 97 percent of the oracle's anomalous CC "
                        "on the 2,000-image benchmark (benchmarks/README.md)")
    g.add_argument("--epochs", type=positive_float, default=None,
                   help="passes over the training images instead of --iterations "
                        "(steps = epochs x training images / --batch-size)")
    g.add_argument("--learning-rate", type=positive_float, default=1e-2, help="Adam learning rate")
    g.add_argument("--lr-decay", type=fraction, default=0.3,
                   help="fraction of the final steps over which the learning rate falls linearly to "
                        "2%% of --learning-rate (0: constant)")
    g.add_argument("--beta-1", type=fraction, default=0.9, help="Adam beta_1")
    g.add_argument("--beta-2", type=fraction, default=0.99, help="Adam beta_2")
    g.add_argument("--clipnorm", type=positive_float, default=None, help="clip each gradient's norm")
    g.add_argument("--clipvalue", type=positive_float, default=None, help="clip gradient values")
    g.add_argument("--global-clipnorm", type=non_negative_float, default=1000.0,
                   help="clip the global gradient norm (guards Adam against the huge first gradients of "
                        "very precise data; 0 disables)")

    g = parser.add_argument_group("online training")
    g.add_argument("--batch-size", type=positive_int, default=8, help="images per gradient step")
    g.add_argument("--checkpoint-interval", type=positive_int, default=1000,
                   help="steps between checkpoints (<out>_<i>.keras and the unit in <out>_<i>.ckpt/)")
    g.add_argument("--max-nonfinite-steps", type=positive_int, default=20,
                   help="steps in a row with a non-finite loss or gradient (each skipped) after which the run "
                        "stops, keeping the last checkpoint")
    g.add_argument("--early-stop", type=non_negative_int, default=0, metavar="EVALUATIONS",
                   help="end the run (through its learning-rate decay) when the held-out NLL has not improved "
                        "for this many evaluations (0: run all --iterations)")
    g.add_argument("--resume", action="store_true",
                   help="continue a stopped run from its checkpoint (flags that shape the model must be the run's; "
                        "no checkpoint yet: start from step 0)")
    g.add_argument("--model-in", default=None, help="start from a saved model (.keras), e.g. to merge new data")
    g.add_argument("--cache-dir", default=None, help="folder of converted data (default: <out dir>/.careless_online_cache)")
    g.add_argument("--parse-workers", type=positive_int, default=None,
                   help="processes parsing CrystFEL streams into the cache, for streams over 64 MB "
                        "(default: the usable CPU cores, at most 8; 1 parses in the main process)")
    g.add_argument("--no-predictions", action="store_true", help="do not write <out>_predictions_<i>.mtz")
    g.add_argument("--output-columns", choices=LAYOUTS, default=DEFAULT_LAYOUT,
                   help="column names of <out>_<i>.mtz and <out>_xval_<i>.mtz: careless (careless's F, SigF, I, "
                        "SigI, N; with --anomalous only the Friedel pairs F(+), SigF(+), ... N(-)) or ccp4 (SIGF, "
                        "SIGI, and the Friedel means F, SIGF, I, SIGI, N beside the pairs)")
    g.add_argument("--naive", action="store_true",
                   help="baseline: per-image scale factors and a weighted average (no model)")

    g = parser.add_argument_group("live mode")
    g.add_argument("--live", action="store_true",
                   help="follow the inputs while they are written (growing streams; folders or glob patterns "
                        "of MTZ files and DIALS .expt/.refl pairs, each complete file taken once); needs --dmin; "
                        "reports under <out>_live/")
    g.add_argument("--live-timeout", type=positive_float, default=60.0,
                   help="seconds without new data after which a live merge finishes, with the learning-rate "
                        "decay of --lr-decay (training goes on between arrivals)")
    g.add_argument("--live-poll", type=positive_float, default=2.0,
                   help="seconds between looks at the sources while waiting for the first data")
    g.add_argument("--live-steps", type=positive_int, default=100, help="gradient steps between looks at the sources (and live report refreshes)")
    g.add_argument("--model-pdb", default=None,
                   help="live report: follow the anomalous map heights at the S, Se and metal atoms of this model "
                        "(PDB/mmCIF in the crystal's cell; needs --anomalous); with several datasets it also phases "
                        "each dataset's difference map against its reference, whose peak heights the report follows")

    g = parser.add_argument_group("model")
    g.add_argument("--mlp-width", "--d-model", dest="d_model", type=positive_int, default=32,
                   help="width of the encoder and scale networks (d_model)")
    g.add_argument("--d-ff", type=positive_int, default=None, help="hidden width of the ResNet blocks (default 2*d_model)")
    g.add_argument("--mlp-layers", type=non_negative_int, default=2, help="ResNet blocks of the scale head")
    g.add_argument("--image-layers", type=non_negative_int, default=2, help="ResNet blocks of the image encoder")
    g.add_argument("--activation", default="relu", help="activation of the ResNet blocks (any keras name)")
    g.add_argument("--disable-metadata-standardization", action="store_true", help="use metadata as is")
    g.add_argument("--disable-image-scales", action="store_true",
                   help="no image vector: the scale head sees zeros instead of the encoder's summary of each "
                        "image, so scales follow from the metadata alone")
    g.add_argument("--scale-file", default=None, metavar="MODEL.keras",
                   help="start the scale networks, k and the error model from a saved model (<out>_0.keras of an "
                        "earlier run with the same network sizes and metadata keys)")
    g.add_argument("--freeze-scales", action="store_true",
                   help="do not train the scale networks (with --scale-file, --model-in or --resume)")

    g = parser.add_argument_group("positional encoding")
    g.add_argument("--positional-encoding-keys", default=None, metavar="KEYS",
                   help="comma-separated metadata keys (e.g. XDET,YDET) whose Fourier features cos/sin(2^l pi p), "
                        "p the key mapped to [-1, 1] over the data, the networks also see; keys that are not "
                        "among metadata_keys are seen only encoded")
    g.add_argument("-L", "--positional-encoding-frequencies", type=positive_int, default=4,
                   help="frequencies l = 0 .. L-1 per encoded key (2L features each)")

    g = parser.add_argument_group("structure factors")
    g.add_argument("--structure-factor-file", default=None, metavar="MERGED.mtz",
                   help="start q(F) from a merged MTZ (F and SigF/SIGF, or F(+), F(-)), e.g. an earlier merge "
                        "of the same crystal form; reflections it lacks start at the prior")
    g.add_argument("--freeze-structure-factors", action="store_true",
                   help="do not train q(F) (with --structure-factor-file, --model-in or --resume): only the "
                        "scales learn")
    g.add_argument("--structure-factor-init-scale", type=positive_float, default=1.0,
                   help="width of the start of q(F) in standard deviations of the prior")

    g = parser.add_argument_group("likelihood and priors")
    g.add_argument("--studentt-likelihood-dof", type=positive_float, default=None, help="Student-t likelihood dof (default: Normal)")
    g.add_argument("--kl-weight", type=non_negative_float, default=1.0, help="weight w_F of the structure factor KL")
    g.add_argument("--scale-kl-weight", type=non_negative_float, default=1.0, help="weight w_Sigma of the scale KL")
    g.add_argument("--mc-samples", type=positive_int, default=1, help="Monte Carlo samples per step")
    g.add_argument("--wilson-prior-b", type=number(float), default=None,
                   help="fixed Wilson B (A^2) of the amplitude prior, <F^2> ~ exp(-B/(2 d^2)); 0: flat prior "
                        "(default: the prior's resolution dependence is learned from the data)")
    g.add_argument("--partiality-prior", choices=("off", "ewald", "ewald-image"), default="off",
                   help="mean of the scales' prior: 'ewald' = log of a still's physical partiality at each "
                        "observation's raw ewald_offset (Gaussian profile of width^2 = r^2 + (eta/d)^2 across an "
                        "Ewald shell of thickness tau, widths learned; off for data without that column), "
                        "'ewald-image' = the same with each image's own mosaic spread (from the image encoder), "
                        "'off' = 0 (default: off)")
    g.add_argument("--refine-uncertainties", action="store_true",
                   help="learn an error model SigI' = a sqrt(SigI^2 + b I + (c I)^2) of the input uncertainties")
    g.add_argument("--no-sigf-calibration", action="store_true",
                   help="write the posterior's SIGF as they are, without widening them by the error model "
                        "fitted to the observations' scatter about the trained model (docs/model.md)")
    g.add_argument("--f-start", choices=("data", "prior"), default="data",
                   help="where each amplitude's posterior starts: 'data' (its normalized mean intensity, so "
                        "strong reflections need not climb from the prior during training) or 'prior' "
                        "(the prior's mean and spread, as careless)")
    g.add_argument("--wilson-prior-knots", type=number(int, at_least=2), default=8,
                   help="knots in 1/d^2 of the learned log Sigma of the prior (at least 2)")
    g.add_argument("--double-wilson-parents", default=None,
                   help="parent dataset of each dataset for the double-Wilson prior, e.g. None,0 (None: a root "
                        "with the Wilson prior; else an earlier dataset); needs datasets (--separate-files, "
                        "--groups or --groups-file)")
    g.add_argument("--double-wilson-r", default=None,
                   help="correlation of each dataset's amplitudes with its parent's, e.g. 0.,0.9 (roots' "
                        "values are ignored); the start of learning with --optimize-double-wilson-r")
    g.add_argument("--optimize-double-wilson-r", action="store_true",
                   help="learn the double-Wilson correlations by empirical Bayes (start: --double-wilson-r, "
                        "else 0.5)")
    g.add_argument("--double-wilson-r-shells", type=positive_int, default=1,
                   help="equal-count resolution shells in 1/d^2, each with its own double-Wilson r (given r: the "
                        "same in every shell; learned: one per dataset and shell); needs --double-wilson-parents")
    g.add_argument("--double-wilson-reindexing-ops", default=None,
                   help="one operator per dataset, ';'-separated, giving the parent's reflection of a child's "
                        "reflection h, e.g. 'x,y,z;y,x,-z' or 'h,k,l;k,h,-l' (identity for roots; translations "
                        "are ignored); needs --double-wilson-parents")

    g = parser.add_argument_group("cross-validation")
    g.add_argument("--test-fraction", type=fraction, default=0.1, help="fraction of images held out")
    g.add_argument("--merge-half-datasets", action="store_true", help="also merge random image halves (<out>_xval_<i>.mtz)")
    g.add_argument("--half-dataset-repeats", type=positive_int, default=1, help="number of half-dataset splits")
    g.add_argument("--validation-frequency", type=positive_int, default=100,
                   help="steps between evaluations (history rows)")
    g.add_argument("--validation-images", type=positive_int, default=128, help="images scored per split at an evaluation")

    g = parser.add_argument_group("TensorFlow")
    g.add_argument("--seed", type=non_negative_int, default=1234, help="random seed")
    g.add_argument("--disable-gpu", action="store_true", help="run on the CPU even if a GPU is present")
    g.add_argument("--run-eagerly", action="store_true", help="do not compile the training step (debugging)")
    g.add_argument("--jit-compile", action="store_true", help="compile the training step with XLA")
    g.add_argument("--strategy", choices=("auto", "single", "mirrored", "multi-worker"), default="auto",
                   help="data-parallel training: mirrored = all GPUs of this machine, multi-worker = the cluster "
                        "of TF_CONFIG or SLURM (every worker runs the same command); auto = mirrored with more "
                        "than one GPU, else single; --batch-size stays the global images per step")
    g.add_argument("--worker-timeout", type=positive_float, default=600.0,
                   help="multi-worker: seconds a worker waits for the others (to join the cluster, to convert "
                        "their share of the cache, to finish a step) before the run stops with an error")
    g.add_argument("--disable-progress-bar", action="store_true",
                   help="no progress display (neither the bar on a terminal nor the periodic lines in a log)")
    g.add_argument("--embed", action="store_true",
                   help="after the outputs are written, open an interactive Python shell (IPython on a terminal "
                        "when installed) holding the trained model, trainer and written paths")
    g.add_argument("--tf-debug", action="store_true",
                   help="show TensorFlow's own log messages (C++ runtime, CUDA, absl), hidden by default")
    return parser


#: Usage line of ``mono`` (argparse's would list every flag, 40 lines).
USAGE = "%(prog)s [-h] [flags] metadata_keys inputs [inputs ...] out"


def build_parser(prog="careless_online mono"):
    """The argparse parser of ``careless_online mono``."""
    parser = Parser(prog=prog, usage=USAGE, description=__doc__.split("\n\n")[0])
    return add_arguments(parser)


def settings_from_args(args, keys, groups, group_spec=None, coupling=None, table_fields=None):
    """Translate checked arguments into (jobs, MergeSettings).

    Parameters
    ----------
    args : argparse.Namespace
        Parsed arguments.
    keys, groups : list
        Metadata keys and per-file space groups from
        :func:`careless_online.cli.checks.mono_arguments`.
    group_spec : careless_online.io.groups.GroupSpec, optional
        How images form datasets (:func:`careless_online.cli.datasets.group_spec`).
    coupling : dict, optional
        Double-Wilson model options (:func:`careless_online.cli.datasets.double_wilson_options`).
    table_fields : dict, optional
        Further :class:`~careless_online.io.table.TableOptions` fields of another command
        (``poly``'s ``laue``).

    Returns
    -------
    (list of (files, TableOptions), MergeSettings)
        One job: all files merge in one model (with groups, one dataset each).
    """
    from careless_online.io.groups import GroupSpec

    from careless_online.io.cache import input_groups
    from careless_online.io.table import TableOptions, parse_cell
    from careless_online.training.loop import TrainConfig
    from careless_online.training.merge import MergeSettings

    files = list(args.inputs) if args.live else input_groups(args.inputs)
    cell = None if args.cell is None else list(parse_cell(args.cell).parameters)
    train = TrainConfig(
        steps=args.iterations, learning_rate=args.learning_rate, lr_decay=args.lr_decay, beta_1=args.beta_1, beta_2=args.beta_2,
        clipnorm=args.clipnorm, clipvalue=args.clipvalue, global_clipnorm=args.global_clipnorm or None,
        eval_every=args.validation_frequency, eval_images=args.validation_images,
        checkpoint_every=args.checkpoint_interval, max_nonfinite_steps=args.max_nonfinite_steps,
        early_stop=args.early_stop, run_eagerly=args.run_eagerly,
        jit_compile=args.jit_compile, progress=not args.disable_progress_bar,
    )
    model_options = dict(d_model=args.d_model, d_ff=args.d_ff, encoder_layers=args.image_layers,
                         scale_layers=args.mlp_layers, activation=args.activation,
                         studentt_dof=args.studentt_likelihood_dof, mc_samples=args.mc_samples,
                         kl_weight=args.kl_weight, scale_kl_weight=args.scale_kl_weight,
                         wilson_prior_b=args.wilson_prior_b, wilson_knots=args.wilson_prior_knots,
                         refine_uncertainties=args.refine_uncertainties, reindexing_ops=args.reindexing_ops,
                         f_start=args.f_start,
                         **(coupling or {}), **encoding_options(args, keys))
    if args.disable_image_scales:
        model_options["image_scales"] = False
    if args.structure_factor_init_scale != 1.0:
        model_options["structure_factor_init_scale"] = args.structure_factor_init_scale
    if args.partiality_prior != "off":
        model_options["partiality_prior"] = args.partiality_prior
    options = TableOptions(spacegroup=groups[0], cell=cell, anomalous=args.anomalous, dmin=args.dmin,
                           isigi_cutoff=args.isigi_cutoff, cell_tolerance=args.cell_tolerance,
                           drop_invalid=args.drop_invalid, intensity_key=args.intensity_key,
                           uncertainty_key=args.uncertainty_key, image_key=args.image_key, **(table_fields or {}))
    jobs = [(files, options)]
    settings = MergeSettings(
        base=args.out, metadata_keys=model_keys(args, keys), table_options=None, train=train, model_options=model_options,
        batch_images=args.batch_size, test_fraction=args.test_fraction, seed=args.seed,
        standardize=not args.disable_metadata_standardization, half_datasets=args.merge_half_datasets,
        half_repeats=args.half_dataset_repeats, naive=args.naive, resume=args.resume, model_in=args.model_in,
        epochs=args.epochs, cache_dir=args.cache_dir, workers=args.parse_workers, predictions=not args.no_predictions,
        groups=group_spec or GroupSpec(), calibrate_sigf=not args.no_sigf_calibration, start=starting_point(args),
        output_columns=args.output_columns, inspect=_shell(args),
    )
    return jobs, settings


def _shell(args):
    """The ``inspect`` hook of ``--embed`` (None without it)."""
    if not args.embed:
        return None
    from careless_online.cli.embed import open_shell

    return open_shell


def encoding_keys(args):
    """The ``--positional-encoding-keys`` as a list (empty without the flag)."""
    if args.positional_encoding_keys is None:
        return []
    keys = [k.strip() for k in args.positional_encoding_keys.split(",") if k.strip()]
    if not keys or len(set(keys)) != len(keys):
        raise InputError(f"--positional-encoding-keys: give distinct comma-separated keys, got "
                         f"{args.positional_encoding_keys!r}")
    return keys


def model_keys(args, keys):
    """The metadata columns a model reads: ``keys``, then the encoded keys that are not among them."""
    return list(keys) + [k for k in encoding_keys(args) if k not in keys]


def encoding_options(args, keys):
    """The positional-encoding options of :func:`careless_online.model.build.new_model` (none without the flag)."""
    if not encoding_keys(args):
        return {}
    return dict(positional_encoding_keys=encoding_keys(args),
                positional_encoding_frequencies=args.positional_encoding_frequencies, plain_metadata_keys=list(keys))


def starting_point(args):
    """The :class:`~careless_online.model.reference.StartingPoint` of the flags."""
    from careless_online.model.reference import StartingPoint

    return StartingPoint(structure_factor_file=args.structure_factor_file,
                         freeze_structure_factors=args.freeze_structure_factors, scale_file=args.scale_file,
                         freeze_scales=args.freeze_scales)


def check_starting_point(args):
    """Refuse missing start files and freezing a part that would stay at its random start."""
    for flag, path in (("--structure-factor-file", args.structure_factor_file), ("--scale-file", args.scale_file)):
        if path is not None and not os.path.isfile(path):
            raise InputError(f"{flag}: no such file", path)
    trained = args.model_in is not None or args.resume
    if args.freeze_structure_factors and not (args.structure_factor_file or trained):
        raise InputError("--freeze-structure-factors keeps q(F) where it starts: give --structure-factor-file "
                         "(or --model-in / --resume)")
    if args.freeze_scales and not (args.scale_file or trained):
        raise InputError("--freeze-scales keeps the scale networks where they start: give --scale-file "
                         "(or --model-in / --resume)")
    if args.naive and (args.structure_factor_file or args.scale_file or args.positional_encoding_keys):
        raise InputError("--naive has no model to start from files or to encode metadata for")


def check_combinations(args, groups):
    """Refuse flag combinations that cannot work (no TensorFlow needed)."""
    check_starting_point(args)
    encoding_keys(args)
    if len(set(groups)) > 1:
        raise InputError("one model merges one space group; merge files of different space groups in separate runs")
    if args.live and args.strategy == "multi-worker":
        raise InputError("--live with --strategy multi-worker is not supported: each worker would follow the "
                         "growing inputs on its own and see other images; use --strategy mirrored on one machine")
    if args.embed and (args.live or args.naive):
        raise InputError("--embed opens a shell on a trained model after an offline merge: it cannot be combined "
                         "with --live or --naive")
    if args.early_stop and (args.live or args.naive or args.test_fraction == 0):
        raise InputError("--early-stop watches the held-out NLL of a trained model: it needs --test-fraction > 0 "
                         "and cannot be combined with --live or --naive")
    if args.live:
        if args.merge_half_datasets or args.naive or args.resume:
            raise InputError("--live cannot be combined with --merge-half-datasets, --naive or --resume")
        if args.dmin is None and args.model_in is None:
            raise InputError("--live needs --dmin: the reflections to estimate are fixed before data arrive")


def configure_tensorflow(args):
    """Import TensorFlow (quietly unless ``--tf-debug``), apply device and seed settings."""
    tf = import_tensorflow(debug=args.tf_debug)
    import keras

    if args.disable_gpu:
        tf.config.set_visible_devices([], "GPU")
    else:
        for gpu in tf.config.list_physical_devices("GPU"):
            tf.config.experimental.set_memory_growth(gpu, True)
    keras.utils.set_random_seed(args.seed)


def run(args, stop=None, table_fields=None):
    """Run ``mono`` (or a command built on it) for parsed arguments; returns the paths written.

    Arguments, files and flag combinations are checked before TensorFlow is
    imported; a failure leaves no new empty folder behind.  The run holds the
    lock of its output prefix (:mod:`careless_online.io.prefix_lock`; on the
    chief only, in a multi-worker run) while it converts, trains and writes.
    ``stop``: the installed :class:`~careless_online.training.interrupt.SignalStop`,
    which training looks at after every step.  ``table_fields(args)``: the
    further :class:`~careless_online.io.table.TableOptions` fields of a
    command built on ``mono`` (``poly``), called after mono's own checks.
    """
    from dataclasses import replace

    from careless_online.cli import datasets

    keys, groups = checks.mono_arguments(args)
    check_combinations(args, groups)
    fields = table_fields(args) if table_fields is not None else {}
    group_spec = datasets.group_spec(args)
    coupling = datasets.double_wilson_options(args, group_spec)
    outdir = os.path.dirname(os.path.abspath(args.out))
    with no_new_empty_folders([outdir, checks.cache_folder(args)]):
        configure_tensorflow(args)
        jobs, settings = settings_from_args(args, keys, groups, group_spec, coupling, fields)
        from careless_online.training.distribute import is_chief, resolve_strategy

        strategy = resolve_strategy(args.strategy, args.worker_timeout)
        settings = replace(settings, strategy=strategy, worker_timeout=args.worker_timeout, stop=stop)
        if strategy.num_replicas_in_sync > 1:
            settings.log(f"data-parallel training: {strategy.num_replicas_in_sync} replicas "
                         f"({type(strategy).__name__})")
        os.makedirs(outdir, exist_ok=True)
        with _prefix_lock(args.out, is_chief(strategy), settings.log):
            written = _run_jobs(args, jobs, settings)
    for paths in written:
        for kind, path in paths.items():
            print(f"wrote {kind}: {path}")
    return written


def _prefix_lock(out, chief, log):
    """The lock of the output prefix (:class:`~careless_online.io.prefix_lock.PrefixLock`); none on other workers."""
    from careless_online.io.prefix_lock import PrefixLock

    return PrefixLock(out, log) if chief else contextlib.nullcontext()


def _run_jobs(args, jobs, settings):
    """Run the merge jobs (or the live merge) of ``mono``; returns the paths written by each."""
    from dataclasses import replace

    if args.live:
        from careless_online.training.live import LiveSettings, run_live

        live = LiveSettings(timeout=args.live_timeout, poll=args.live_poll, steps_per_round=args.live_steps,
                            model_pdb=args.model_pdb)
        files, options = jobs[0]
        return [run_live(files, replace(settings, table_options=options), live)]
    from careless_online.training.merge import run_merge

    return [run_merge(files, replace(settings, table_options=options), output_id=output_id)
            for output_id, (files, options) in enumerate(jobs)]
