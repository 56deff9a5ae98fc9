"""What a run does with the checkpoint folder of its output prefix, with and without ``--resume``.

* ``--resume`` with no checkpoint yet (the run was killed before its first
  one, or a batch system requeues a job whose command always says
  ``--resume``): a new run from step 0, said in one line -- unless something
  contradicts it (a unit that exists but is damaged or partial, or an output
  model ``<out>_<i>.keras`` without a checkpoint), which is refused.
* No ``--resume`` while the folder holds a checkpoint of an unfinished run:
  refused in one line (starting over would overwrite it).
* Interrupted (Ctrl-C, SIGTERM): :func:`interrupted_message` names the
  checkpoint to resume from.
"""

import os

from careless_online.errors import InputError
from careless_online.training.checkpoint import latest, no_checkpoint_message, unit_folders


def nothing_to_resume(folder, model_path, log):
    """``--resume`` found no complete unit in ``folder``: say that the run starts at step 0, or refuse.

    Parameters
    ----------
    folder : str
        The checkpoint folder.
    model_path : str
        The output model ``<out>_<i>.keras`` that goes with it.
    log : callable

    Raises
    ------
    InputError
        When units exist but none is complete, or the output model exists
        without a checkpoint (a fresh start would overwrite a trained model).
    """
    if unit_folders(folder):
        raise InputError(no_checkpoint_message(model_path))
    if os.path.exists(model_path):
        raise InputError(f"--resume: no checkpoint to resume from, but the model {model_path} exists "
                         "(start from it with --model-in, or remove it to start over)", folder)
    log(f"--resume: no checkpoint yet in {folder} (the run stopped before its first one): starting from step 0")


def refuse_to_start_over(unit):
    """Refuse a run without ``--resume`` whose output prefix holds a checkpoint of an unfinished run.

    Parameters
    ----------
    unit : careless_online.training.checkpoint.Checkpoint or None
        The newest complete unit of the run's checkpoint folder.  Units of
        live merges and of versions that did not record their run are not
        judged (never refused).

    Raises
    ------
    InputError
    """
    if unit is None or unit.state.get("run") is None or unit.state.get("finished", True):
        return
    planned = unit.state.get("config", {}).get("steps", "?")
    raise InputError(f"a checkpoint of an unfinished run is here (step {unit.step} of {planned}): add --resume to "
                     f"continue it, or remove {os.path.dirname(unit.path)} to start over", unit.path)


def interrupted_message(model_path, step):
    """The line said when a run is interrupted at ``step``: the checkpoint to resume from.

    Parameters
    ----------
    model_path : str or None
        The output model whose checkpoint folder the run writes (None: no checkpoints).
    step : int
        The step reached.

    Returns
    -------
    str
    """
    if not model_path:
        return f"interrupted at step {step}"
    from careless_online.training.checkpoint import folder

    unit = latest(folder(model_path))
    if unit is None:
        return f"interrupted at step {step}, before the first checkpoint: rerun with --resume to start again"
    return (f"interrupted at step {step}; the last checkpoint is {unit.path} (step {unit.step}): rerun the same "
            "command with --resume to continue")
