#!/bin/bash
# The live demonstrations behind docs/img/live_dials.png and docs/img/live_stream.png (docs/beamline.md).
#
# A simulated experiment is written over a few minutes (DIALS stills pairs appearing in a folder, or a growing
# CrystFEL stream) while `careless_online mono --live --anomalous --model-pdb` follows it; the resident memory of
# the merge and the images it has merged are sampled every 5 s (rss.csv), and the live report's index.html is
# photographed by headless Chromium at the end.
#
#   bash docs/img/live_demo.sh dials /tmp/demo_dials
#   bash docs/img/live_demo.sh stream /tmp/demo_stream
set -euo pipefail
kind=${1:?dials or stream}
work=${2:?work folder}
images=${IMAGES:-1000}     # images written in all
block=${BLOCK:-5}          # images per DIALS pair / per stream append
interval=${INTERVAL:-1}    # seconds between blocks
steps=${STEPS:-50}         # gradient steps per round (--live-steps)
iterations=${ITERATIONS:-600}
mkdir -p "$work" && cd "$work"

simulation="--dmin 2.5 --seed 12"
# the crystal's atoms depend on the seed, not on the images: one image gives the model of the sites
careless_online.simulate sites --format dials --n-images 1 $simulation > /dev/null
if [ "$kind" = dials ]; then source=sim_dials/; keys=dHKL,XDET,YDET,delpsi; mkdir -p sim_dials
else source=sim.stream; keys=dHKL,XDET,YDET,ewald_offset; fi

# the merge starts first and waits for data, as at the beamline
careless_online mono --live --dmin 2.5 --spacegroups "P 43 21 2" --anomalous --model-pdb sites_model.pdb \
    --live-steps "$steps" --live-poll 2 --live-timeout 20 --iterations "$iterations" "$keys" "$source" merge/run > live.log 2>&1 &
merger=$!
sleep "${DELAY:-20}"
careless_online.simulate sim --format "$kind" --n-images "$images" --block-size "$block" \
    --interval "$interval" $simulation > simulate.log &
writer=$!
echo "seconds,rss_mb,peak_rss_mb,images_merged,images_converted" > rss.csv
start=$(date +%s)
while kill -0 "$merger" 2>/dev/null; do
    rss=$(awk '/VmRSS/ {print $2 / 1024}' "/proc/$merger/status" 2>/dev/null || echo nan)
    peak=$(awk '/VmHWM/ {print $2 / 1024}' "/proc/$merger/status" 2>/dev/null || echo nan)
    counts=$(python -c "import json; s = json.load(open('merge/run_live/status.json')); print(s['images'], s.get('images_converted', ''), sep=',')" 2>/dev/null || echo ",")
    echo "$(( $(date +%s) - start )),$rss,$peak,$counts" >> rss.csv
    sleep 5
done
wait "$writer" || true
wait "$merger"

chromium --headless --no-sandbox --disable-gpu --no-first-run --disable-background-networking \
    --disable-component-update --disable-sync --user-data-dir="$PWD/.chromium" --screenshot="$PWD/page.png" \
    --window-size=1200,3600 "file://$PWD/merge/run_live/index.html" > /dev/null 2>&1
# smaller for the docs: the blank bottom cut off, 3/4 size, 128 colours
python -c "
from PIL import Image, ImageOps
page = Image.open('page.png').convert('RGB')
page = page.crop((0, 0, page.width, min(page.height, ImageOps.invert(page).getbbox()[3] + 20)))
page = page.resize((page.width * 3 // 4, page.height * 3 // 4), Image.LANCZOS)
page.quantize(128, method=Image.Quantize.FASTOCTREE).save('live_$kind.png', optimize=True)
"
ls -l "live_$kind.png"
