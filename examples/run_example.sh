#!/usr/bin/env bash
# Merge the shipped example (200 simulated XFEL stills of a lysozyme-like crystal,
# P 43 21 2, with a selenium anomalous signal), then compute statistics and plots.
# Usage: bash examples/run_example.sh [output folder]   (default: example_out)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="${1:-example_out}"
mkdir -p "$out"

careless_online mono \
    --anomalous --spacegroups "P 43 21 2" \
    --iterations 1500 --batch-size 8 --merge-half-datasets \
    "dHKL,XDET,YDET,ewald_offset" "$here/example.stream" "$out/hewl"

careless_online.cchalf  "$out/hewl_xval_0.mtz"        -i "$out/cchalf.png"
careless_online.ccanom  "$out/hewl_xval_0.mtz"        -i "$out/ccanom.png"
careless_online.ccpred  "$out/hewl_predictions_0.mtz" -i "$out/ccpred.png"
careless_online.isigi   "$out/hewl_0.mtz"
careless_online.completeness "$out/hewl_0.mtz"
careless_online.plot_history "$out/hewl_history.csv"  -i "$out/history.png"
careless_online.anomalous_peaks "$out/hewl_0.mtz" "$here/example_model.pdb" -i "$out/anomalous_peaks.png"
echo "Merged amplitudes: $out/hewl_0.mtz (truth for comparison: $here/example_truth.mtz)"
