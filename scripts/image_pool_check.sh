#!/bin/bash
# A job on a Prefect process pool whose only worker runs inside the synthgen image, the catalog on an
# S3 server (moto) on loopback: what docs/scale-out.md's Docker pool needs from the image. Run on the
# development machine (session 13) as below; with Docker, start the worker with the `docker run` line
# from the Dockerfile's header instead of `buildah run`.
#
#   podman build --network host --isolation chroot -t synthgen:cpu --build-arg COMMIT=$(git rev-parse HEAD) .
#   scripts/image_pool_check.sh            # needs buildah, and .venv (make install) for the driver side
#
# (This machine cannot start OCI containers: crun may not set rlimits without CAP_SYS_RESOURCE, so the
# worker runs with `buildah run --isolation chroot`: the image's file system and its installed synthgen,
# its own user and HOME, the host's network for the servers.)
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
BIN=$REPO/.venv/bin
W=${W:-/tmp/synthgen-image-check}
IMAGE=${IMAGE:-synthgen:cpu}
rm -rf "$W"; mkdir -p "$W"
export HF_HUB_OFFLINE=1 PREFECT_HOME=$W/prefect-home PREFECT_SERVER_ANALYTICS_ENABLED=false DO_NOT_TRACK=1
export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_DEFAULT_REGION=us-east-1 AWS_EC2_METADATA_DISABLED=true
export AWS_ENDPOINT_URL=http://127.0.0.1:5599 PREFECT_API_URL=http://127.0.0.1:4299/api
pids=()
CTR=""
# each service in its own process group (setsid), stopped whole: the servers' and the worker's children too
cleanup() {
  for p in "${pids[@]}"; do kill -- -"$p" 2>/dev/null || true; done
  sleep 2
  [ -n "$CTR" ] && buildah rm "$CTR" > /dev/null 2>&1 || true
}
trap cleanup EXIT
setsid "$BIN/moto_server" -p 5599 > "$W/moto.log" 2>&1 & pids+=($!)
setsid "$BIN/prefect" server start --host 127.0.0.1 --port 4299 --no-ui > "$W/prefect.log" 2>&1 & pids+=($!)
for _ in $(seq 120); do curl -sf "$PREFECT_API_URL/health" > /dev/null && break; sleep 1; done
"$BIN/python" - "$W" "$REPO" <<'PY'
import sys
from pathlib import Path

import boto3
import yaml

from synthgen.digits import CLASS_NAMES, export_image_folder

work, repo = Path(sys.argv[1]), Path(sys.argv[2])
boto3.client("s3").create_bucket(Bucket="team")
root = export_image_folder(work / "real")
(root / "classes.txt").write_text("\n".join(CLASS_NAMES) + "\n")
for folder in root.iterdir():
    if folder.is_dir():
        for f in sorted(folder.glob("*.png"))[20:]:
            f.unlink()
spec = yaml.safe_load((repo / "flows/demo/digits-demo.yaml").read_text())
spec["conditioning"]["classes"] = spec["conditioning"]["classes"][:3]
spec.update(name="image-pool-job", images_per_condition=8)
spec["generator"].update(steps=4, batch_size=8)
spec["output"] = {"dataset": "digits-image-pool", "shard_size": 8}
(work / "job.yaml").write_text(yaml.safe_dump(spec))
PY
CAT=s3://team/synthgen
"$BIN/synthgen" --data-dir "$W/driver" --catalog $CAT ingest "$W/real" --name digits-real > "$W/ingest.log" 2>&1
CTR=$(buildah from --pull=never "$IMAGE")
setsid buildah run --isolation chroot --network host \
  --env PREFECT_API_URL="$PREFECT_API_URL" --env AWS_ENDPOINT_URL="$AWS_ENDPOINT_URL" \
  --env AWS_ACCESS_KEY_ID=testing --env AWS_SECRET_ACCESS_KEY=testing --env AWS_DEFAULT_REGION=us-east-1 \
  --env AWS_EC2_METADATA_DISABLED=true --env HF_HUB_OFFLINE=1 \
  "$CTR" prefect worker start --pool gpu --type process --limit 1 --name image-worker > "$W/worker.log" 2>&1 &
pids+=($!)
SYNTHGEN_SHARD_POOL=gpu "$BIN/synthgen" --data-dir "$W/driver" --catalog $CAT run "$W/job.yaml" --json "$W/result.json"
"$BIN/synthgen" --data-dir "$W/driver" --catalog $CAT verify digits-image-pool
# every shard ran in the image: its installation, not this checkout
"$BIN/python" -c "
import json, glob, sys
runs = json.load(open(glob.glob('$W/driver/derived/*/digits-image-pool/versions/000001/shard-runs.json')[0]))
print('\n'.join(f\"shard {r['shard']}: host {r['host']}, synthgen at {r['installed_at']}\" for r in runs))
sys.exit(any(r['installed_at'].startswith('$REPO') for r in runs))"
