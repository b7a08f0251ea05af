#!/usr/bin/env python3
"""Renders docker/seccomp-io_uring.json (Docker's profile format) into the OCI runtime-spec format
that the kubelet's container runtimes read for a `Localhost` profile: deploy/seccomp/seccomp-io_uring.json.

containerd reads a Localhost profile as a plain OCI `LinuxSeccomp`: it ignores Docker's `archMap`
and the `includes`/`excludes` conditions, so the Docker-format file would there allow every
capability-gated rule to everyone. Docker resolves those conditions per container; this script
resolves them once, for the Deployment's containers: no capabilities (drop ALL), amd64 or arm64
nodes, Linux 5.10 or newer (what the io_uring engine needs anyway).

    python3 deploy/render-seccomp.py           # rewrite deploy/seccomp/seccomp-io_uring.json
    python3 deploy/render-seccomp.py --check   # exit 1 if the committed file is stale
"""
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SOURCE = REPO / "docker" / "seccomp-io_uring.json"
TARGET = REPO / "deploy" / "seccomp" / "seccomp-io_uring.json"
ARCHES = {"amd64", "x86", "x32", "arm64", "arm"}
MIN_KERNEL = (5, 10)
ARCH_NAMES = {"SCMP_ARCH_X86_64", "SCMP_ARCH_AARCH64"}


def applies(rule):
    inc, exc = rule.get("includes", {}), rule.get("excludes", {})
    if inc.get("caps"):
        return False  # the containers hold no capability
    if inc.get("arches") and not ARCHES & set(inc["arches"]):
        return False
    if "minKernel" in inc:
        want = tuple(int(x) for x in inc["minKernel"].split("."))
        if want > MIN_KERNEL:
            return False
    if exc.get("arches") and ARCHES <= set(exc["arches"]):
        return False
    return True  # excludes.caps: we lack them, so the rule holds


def render():
    docker = json.loads(SOURCE.read_text())
    arches = []
    for a in docker["archMap"]:
        if a["architecture"] in ARCH_NAMES:
            arches += [a["architecture"], *a.get("subArchitectures", [])]
    rules = []
    for r in docker["syscalls"]:
        if not applies(r):
            continue
        out = {"names": r["names"], "action": r["action"]}
        if "errnoRet" in r:
            out["errnoRet"] = r["errnoRet"]
        if r.get("args"):
            out["args"] = r["args"]
        rules.append(out)
    oci = {
        "defaultAction": docker["defaultAction"],
        "defaultErrnoRet": docker["defaultErrnoRet"],
        "architectures": arches,
        "syscalls": rules,
    }
    return json.dumps(oci, indent=2) + "\n"


def main():
    text = render()
    if sys.argv[1:] == ["--check"]:
        if not TARGET.exists() or TARGET.read_text() != text:
            print(f"{TARGET.relative_to(REPO)} is stale: run python3 deploy/render-seccomp.py", file=sys.stderr)
            return 1
        print(f"{TARGET.relative_to(REPO)} matches {SOURCE.relative_to(REPO)}")
        return 0
    if sys.argv[1:]:
        print(__doc__, file=sys.stderr)
        return 2
    TARGET.write_text(text)
    print(f"wrote {TARGET.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
