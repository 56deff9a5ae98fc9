"""``careless_online.filter_image``: drop the images whose CCpred is below a cutoff from the unmerged inputs."""

import os
import re

import pandas as pd

from careless_online.cli.common import user_errors_exit
from careless_online.cli.parser import Parser
from careless_online.errors import InputError
from careless_online.io.readers import IMAGE_KEYS
from careless_online.stats.inputs import read_mtz
from careless_online.tools.files import check_output, write_output
from careless_online.tools.filter_image import file_image_ids, image_ccpred, kept_rows

#: How a predictions file is told from an input (careless's rule: the name ends in _predictions_<i>.mtz).
PREDICTIONS_NAME = re.compile(r".+_predictions_[0-9]+\.mtz$")

#: Columns the predictions files need.
NEEDED = ("file_id", "image_id", "Iobs", "SigIobs", "Ipred")


def build_parser():
    """The command's argument parser."""
    parser = Parser(prog="careless_online.filter_image",
                    description="Per-image CCpred from the predictions files (<base>_predictions_<i>.mtz, told "
                                "apart by that name) and a copy of each unmerged MTZ input without the images "
                                "whose CCpred is below --cc-cutoff, as careless.filter_image does; the inputs "
                                "must be given in the order of the merge.")
    parser.add_argument("mtzs", nargs="+", help="predictions files and the unmerged MTZ inputs of the merge")
    parser.add_argument("-c", "--cc-cutoff", type=float, required=True, help="keep images with CCpred >= this")
    parser.add_argument("-m", "--method", choices=("pearson", "spearman"), default="pearson",
                        help="correlation (Pearson weighted by 1/SigIobs^2, as in careless)")
    parser.add_argument("-o", "--output", default=None,
                        help="output base: <base>_<i>.mtz for the i-th input (default: <input>_filtered.mtz)")
    parser.add_argument("--image-key", default=None, help="image column of the inputs (default: BATCH/image_id/IMAGE)")
    return parser


def _image_key(ds, key, path):
    keys = [key] if key else list(IMAGE_KEYS)
    found = [k for k in keys if k in ds.columns]
    if not found:
        raise InputError(f"no image column ({', '.join(keys)}); give --image-key", path)
    return found[0]


@user_errors_exit
def main(argv=None):
    """Run ``careless_online.filter_image``."""
    args = build_parser().parse_args(argv)
    predictions = [p for p in args.mtzs if PREDICTIONS_NAME.match(p)]
    inputs = [p for p in args.mtzs if not PREDICTIONS_NAME.match(p)]
    if not predictions or not inputs:
        raise InputError("give both predictions files (<base>_predictions_<i>.mtz) and unmerged MTZ inputs")
    rows = [read_mtz(p, required=NEEDED, what="predictions file")[list(NEEDED)].reset_index(drop=True)
            for p in predictions]
    cc = image_ccpred(pd.concat(rows, ignore_index=True), args.method)
    outputs = [f"{os.path.splitext(p)[0]}_filtered.mtz" if args.output is None else f"{args.output}_{i}.mtz"
               for i, p in enumerate(inputs)]
    for path in outputs:
        check_output(path, args.mtzs)
    offset = 0
    for file_id, (path, out) in enumerate(zip(inputs, outputs)):
        ds = read_mtz(path, merged=False, what="unmerged MTZ file")
        image_ids = file_image_ids(ds[_image_key(ds, args.image_key, path)].to_numpy(), offset)
        offset = int(image_ids.max()) + 1
        keep = kept_rows(image_ids, file_id, cc, args.cc_cutoff, path)
        dropped = len(set(image_ids)) - len(set(image_ids[keep]))
        write_output(ds[keep], out, args.mtzs)
        print(f"wrote {out}: {len(set(image_ids[keep]))} images kept, {dropped} dropped (CCpred < {args.cc_cutoff} "
              "or not predicted)")
