#!/usr/bin/env bash
# GPU checks, for a machine with a CUDA GPU (a lent one): the GPU-relevant tests, the trainers'
# throughput, four trials packed on one GPU with resources.gpus: 0.25 (all four on the device at
# the same time, memory per trial), and a 2-worker trial when there are 2 GPUs. Prints one JSON
# line at the end. On a machine without CUDA it says so in that line and exits 0.
#
#     bash bench/gpu_check.sh            # from the repository root, after pip install -e ".[test]"
set -uo pipefail
cd "$(dirname "$0")/.."
export RAY_USAGE_STATS_ENABLED=0 PYTHONUNBUFFERED=1
out=$(mktemp -d)

gpus=$(python3 -c "import torch; print(torch.cuda.device_count() if torch.cuda.is_available() else 0)")
name=$(python3 -c "import torch; print(torch.cuda.get_device_name(0) if torch.cuda.is_available() else '')")
if [ "$gpus" = "0" ]; then
  echo '{"check": "gpu", "gpus": 0, "note": "no CUDA device: nothing checked"}'
  exit 0
fi
echo "== $gpus GPU(s): $name"

# 1. The tests whose code paths differ on a GPU: device choice, autocast, RNG state in checkpoints,
#    and the controller paths that carry those checkpoints (no Ray, PostgreSQL or browser needed).
echo "== tests"
python3 -m pytest -q -p no:cacheprovider tests/trials tests/surrogates tests/search/test_controller.py \
  tests/search/test_schedulers.py tests/search/test_pbt.py tests/search/test_time_limits.py \
  -m "not ray and not postgres and not browser" 2>&1 | tail -3 | tee "$out/tests.txt"
tests=$(tail -1 "$out/tests.txt")

# 2. Trainer throughput against a bare loop on the same device.
echo "== trainer throughput"
python3 bench/bench_trainer.py --repeats 1 2>&1 | tee "$out/trainer.txt" | tail -4
trainer=$(grep '^{' "$out/trainer.txt" | tail -1)

# 3. Four trials with gpus: 0.25 on one GPU at once: each holds ~256 MiB on the device for 8 s and
#    writes when it started and ended, where it ran and what it allocated.
echo "== packing: 4 trials x gpus 0.25"
mkdir -p "$out/pkg"
cat > "$out/pkg/gpu_pack.py" <<'PY'
import json, os, time
import torch

def hold(config):
    dev = torch.device("cuda")
    x = torch.empty(64 * 1024 * 1024, dtype=torch.float32, device=dev)  # 256 MiB
    x.fill_(1.0)
    t0 = time.time()
    time.sleep(8)
    rec = {"number": int(config["i"]), "start": t0, "end": time.time(), "device": torch.cuda.current_device(),
           "visible": os.environ.get("CUDA_VISIBLE_DEVICES"), "mib": torch.cuda.memory_allocated(dev) / 2**20}
    with open(config["log"], "a") as f:
        f.write(json.dumps(rec) + "\n")
    return float(x.sum().item() > 0)
PY
cat > "$out/pack.yaml" <<YAML
name: gpu-pack
objective: {metric: ok, direction: maximize}
trial: {entrypoint: "gpu_pack:hold", params: {log: "$out/pack.jsonl"}}
space: {i: {type: int, low: 0, high: 1000}}
algorithm: {name: random, seed: 0}
budget: {trials: 4, parallel: 4}
resources: {cpus: 1, gpus: 0.25}
backend: {name: ray}
artifacts: $out/artifacts
YAML
PYTHONPATH="$out/pkg:${PYTHONPATH:-}" search run "$out/pack.yaml" --storage "sqlite:///$out/pack.db" --quiet
pack=$(python3 - "$out/pack.jsonl" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
overlap = max(r["start"] for r in rows) < min(r["end"] for r in rows)
print(json.dumps({"trials": len(rows), "all_at_once": overlap, "mib_per_trial": [round(r["mib"]) for r in rows],
                  "visible_devices": sorted({str(r["visible"]) for r in rows})}))
PY
)
echo "$pack"

# 4. A 2-worker trial needs 2 GPUs and multi-worker trials (resources.workers), not built yet.
two="skipped: $( [ "$gpus" -ge 2 ] && echo 'multi-worker trials are not built yet' || echo 'one GPU' )"

python3 - "$name" "$gpus" "$tests" "$trainer" "$pack" "$two" <<'PY'
import json, sys
name, gpus, tests, trainer, pack, two = sys.argv[1:]
def load(s):
    try:
        return json.loads(s)
    except ValueError:
        return s
print(json.dumps({"check": "gpu", "device": name, "gpus": int(gpus), "tests": tests, "trainer": load(trainer),
                  "packing": load(pack), "two_workers": two}))
PY
