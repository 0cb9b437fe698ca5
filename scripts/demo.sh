#!/usr/bin/env bash
# lineside end to end on the built-in synthetic example, CPU only, a few minutes:
#   synth -> train (tiny preset) -> eval -> export INT8 -> calibrate -> TensorRT-RTX engine (sm86, ahead of time)
#   -> line-side run on a video of parts, rejects driving a virtual serial relay (socat PTY pair).
# Everything goes under ${DEMO_DIR:-demo}/. Set PRESET=edge for the real-weights model (its training alone takes about 6 minutes).
# During the run, the live dashboard is at http://${DASHBOARD:-127.0.0.1:8080}/ (DASHBOARD= turns it off).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck disable=SC1091
. .venv/bin/activate
DEMO=${DEMO_DIR:-demo}
PRESET=${PRESET:-tiny}
CATEGORY=${CATEGORY:-washer}
DASHBOARD=${DASHBOARD-127.0.0.1:8080}
if [ -e "$DEMO" ] && [ ! -e "$DEMO/.lineside-demo" ] && [ -n "$(ls -A "$DEMO")" ]; then
    echo "$DEMO exists and is not a lineside demo folder: set DEMO_DIR to a new folder" >&2
    exit 2
fi
rm -rf "$DEMO" && mkdir -p "$DEMO" && touch "$DEMO/.lineside-demo"
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "1/7 synthetic data set (6 categories, MVTec layout, exact masks) + held-out good $CATEGORY parts"
lineside synth "$DEMO/data" --seed 0
lineside synth "$DEMO/held_out" --categories "$CATEGORY" --seed 1 --train 100 --test-good 1 --test-defect 1

step "2/7 train one CRR model on all categories (preset $PRESET)"
lineside train --data "$DEMO/data" --model crr --preset "$PRESET" --out "$DEMO/run"

step "3/7 evaluate: per-category I-AUROC, P-AUROC, AUPRO, AP, F1-max + heatmaps of the worst cases"
lineside eval "$DEMO/run/model.pt" --data "$DEMO/data" --json "$DEMO/eval.json" --heatmaps "$DEMO/heatmaps"

step "4/7 export a fused INT8 bundle (Q/DQ calibrated on good training images, accuracy checked vs FP32)"
lineside export "$DEMO/run/model.pt" --precision int8 --data "$DEMO/data" --out "$DEMO/bundle"

step "5/7 reject threshold for $CATEGORY from 100 held-out good parts (target false-reject 5 %)"
lineside calibrate "$DEMO/bundle" --good "$DEMO/held_out/$CATEGORY/train/good" --class "$CATEGORY" \
    --false-reject 0.05 --plot "$DEMO/thresholds"

step "6/7 TensorRT-RTX engine, built ahead of time for an RTX 30xx (sm86) on this CPU"
if python -c "import tensorrt_rtx_bindings" 2>/dev/null || python -c "import tensorrt" 2>/dev/null; then
    lineside build "$DEMO/bundle" --target sm86 --out "$DEMO/model.engine"
    lineside build --inspect "$DEMO/model.engine"
else
    echo "neither tensorrt nor TensorRT-RTX is installed: skipping the engine build"
fi

step "7/7 line-side run: a video of $CATEGORY parts -> ONNX Runtime -> virtual serial relay"
python - "$DEMO" "$CATEGORY" <<'PY'
import json, sys
from pathlib import Path
from lineside.data import load_image, open_dataset
from lineside.synth.video import write_parts_video
demo, category = Path(sys.argv[1]), sys.argv[2]
samples = open_dataset(demo / "data").select(split="test", category=category)
good = sorted((s for s in samples if not s.label), key=lambda s: s.image_path.name)[:10]
defect = sorted((s for s in samples if s.label), key=lambda s: str(s.image_path))[::3][:6]
parts = good[:3] + defect[:2] + good[3:6] + defect[2:4] + good[6:] + defect[4:]
write_parts_video(demo / "parts.avi", [load_image(s.image_path) for s in parts], fps=10, codec="FFV1")
(demo / "parts.json").write_text(json.dumps([{"part": i, "defect": s.label, "file": s.image_path.name} for i, s in enumerate(parts)]))
print(f"wrote {len(parts)} parts ({sum(s.label for s in parts)} defective) to {demo / 'parts.avi'}")
PY
socat -d -d pty,raw,echo=0,link="$DEMO/relay" pty,raw,echo=0,link="$DEMO/plc" 2>"$DEMO/socat.log" &
SOCAT=$!
trap 'kill $SOCAT ${READER:-} 2>/dev/null || true' EXIT
for _ in $(seq 50); do [ -e "$DEMO/plc" ] && break; sleep 0.1; done
timeout 60 cat "$DEMO/plc" >"$DEMO/relay_bytes.txt" 2>/dev/null &
READER=$!
dashboard=()
if [ -n "$DASHBOARD" ] && python -c "import starlette, uvicorn" 2>/dev/null; then
    dashboard=(--dashboard "$DASHBOARD")
    echo "live dashboard (while the parts run): http://$DASHBOARD/"
fi
lineside run "$DEMO/bundle" --source "$DEMO/parts.avi" --class "$CATEGORY" \
    --actuator "serial://$(readlink -f "$DEMO/relay")?baud=9600&on=REJECT&off=OK" \
    --rate 5 --delay-ms 400 --pulse-ms 100 --log "$DEMO/results.jsonl" --summary "$DEMO/summary.json" --save-rejects "$DEMO/rejects" \
    "${dashboard[@]}"
sleep 0.5
step "results"
python - "$DEMO" <<'PY'
import json, sys
from pathlib import Path
demo = Path(sys.argv[1])
truth = {p["part"]: p["defect"] for p in json.loads((demo / "parts.json").read_text())}
rows = [json.loads(line) for line in (demo / "results.jsonl").read_text().splitlines()]
rows = [r for r in rows if r.get("type") == "part"]
print(f"{'part':>4} {'truth':>6} {'score':>8} {'threshold':>9} verdict")
for r in rows:
    score = r.get("score")
    print(f"{r['part_id']:>4} {'defect' if truth.get(r['part_id']) else 'good':>6} "
          f"{score if score is None else round(score, 4)!s:>8} {r.get('threshold') or float('nan'):>9.4f} {r['verdict']}")
print(f"{len(rows)} decisions logged for {len(truth)} parts")
PY
kill "$READER" 2>/dev/null || true
echo "virtual relay received: $(tr '\n' ' ' <"$DEMO/relay_bytes.txt" | head -c 400)"
if [ ${#dashboard[@]} -gt 0 ]; then
    echo "browse the decisions, images and heatmaps: lineside review $DEMO/results.jsonl --dashboard $DASHBOARD"
    echo "watch the line live again, one part a second (Ctrl-C stops): lineside run $DEMO/bundle --source $DEMO/parts.avi --class $CATEGORY --rate 1 --dashboard $DASHBOARD"
fi
