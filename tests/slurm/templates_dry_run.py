#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""The slurm/ templates without SLURM: each runs under bash with srun, mpirun and scontrol replaced by
stubs that record their arguments, and the recorded command lines are checked:
  - the qdist command line (flags, staging beside the output, device), launched by srun --mpi=pmix
    --kill-on-bad-exit=1 or by mpirun -n $SLURM_NTASKS;
  - --resume exactly when SLURM_RESTART_COUNT > 0 or STAGING/fingerprint.json exists;
  - the multi-node templates refuse a staging directory that srun's check on every node cannot see;
  - the mpirun wrapper gives the rank with node-local index i the i-th GPU of CUDA_VISIBLE_DEVICES;
  - SIGUSR1 (sent by --signal=B:USR1@T before the time limit) runs `scontrol requeue <job>`, up to
    MAX_REQUEUES times, and not in the first REQUEUE_MIN_SECONDS (a --time shorter than the margin);
  - the #SBATCH lines: --requeue, --signal=B:USR1@..., --open-mode=append, one rank per GPU.
This is the test of the templates' command lines wherever a real SLURM cannot run (slurm_localhost.py
runs them under a real one). Standard library only.
"""
import argparse
import os
import re
import signal
import subprocess
import sys
import tempfile
import time

TEMPLATES = ["qdist-1node-srun.sbatch", "qdist-1node-mpirun.sbatch", "qdist-multinode-srun.sbatch",
             "qdist-multinode-mpirun.sbatch", "qdist-cpu-srun.sbatch"]

# srun/mpirun/scontrol/scancel stub: one record per call (ended by \x1e), each argument ended by \x1f. srun runs the
# shared-file-system check (`... test -f MARKER`) for real unless STUB_SHARED_FAIL is set; srun and
# mpirun sleep STUB_SLEEP seconds (so a signal can arrive while the step runs).
STUB = r"""#!/bin/bash
name=$(basename "$0")
{ printf '%s\x1f' "$name" "$@"; printf '\x1e'; } >> "$STUB_CALLS"
if [ "$name" = srun ] && [ "${@: -2:1}" = -f ] && [ "${@: -3:1}" = test ]; then
  [ -n "${STUB_SHARED_FAIL:-}" ] && exit 1
  exec test -f "${@: -1}"
fi
case "$name" in srun|mpirun) sleep "${STUB_SLEEP:-0}" ;; esac
exit 0
"""


class Failed(Exception):
    pass


def check(cond, msg):
    if not cond:
        raise Failed(msg)


class Env:
    def __init__(self, repo, root):
        self.repo, self.root = repo, root
        self.bin = os.path.join(root, "bin")
        os.makedirs(self.bin)
        for n in ("srun", "mpirun", "scontrol", "scancel"):
            p = os.path.join(self.bin, n)
            with open(p, "w") as f:
                f.write(STUB)
            os.chmod(p, 0o755)
        self.n = 0

    def run(self, template, extra=None, signal_after=None):
        self.n += 1
        d = os.path.join(self.root, f"run{self.n}")
        os.makedirs(d)
        calls = os.path.join(d, "calls")
        env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
        env.update(PATH=self.bin + ":" + env.get("PATH", "/usr/bin:/bin"), STUB_CALLS=calls,
                   QDIST="/opt/qdist/bin/qdist", MODEL=d + "/model", OUTPUT=d + "/out", CALIB=d + "/calib.jsonl",
                   SLURM_JOB_ID="4242", SLURM_NTASKS="4", SLURM_JOB_NODELIST="node[1-2]", SLURM_JOB_NUM_NODES="2")
        env.update(extra or {})
        p = subprocess.Popen(["bash", os.path.join(self.repo, "slurm", template)], env=env, cwd=d,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        if signal_after is not None:
            # deliver once the step has started (its srun/mpirun call is recorded)
            end = time.monotonic() + 20
            while time.monotonic() < end and not (
                    os.path.exists(calls) and "\x1fquantize\x1f" in open(calls).read()):
                time.sleep(0.05)
            time.sleep(0.2)
            p.send_signal(signal.SIGUSR1)
        out, _ = p.communicate(timeout=60)
        recs = []
        if os.path.exists(calls):
            recs = [rec.split("\x1f")[:-1] for rec in open(calls).read().split("\x1e")[:-1]]
        return p.returncode, out, recs, env


def qdist_args(env, device, resume):
    a = [env["QDIST"], "quantize", "--model", env["MODEL"], "--output", env["OUTPUT"], "--calib", env["CALIB"],
         "--method", "gptq", "--bits", "4", "--group-size", "128", "--format", "gptq",
         "--staging", env.get("STAGING", env["OUTPUT"] + ".qdist-staging"), "--schedule", "exact", "--backend", device]
    return a + (["--resume"] if resume else [])


def launch_call(recs):
    """The srun/mpirun call that launched qdist quantize."""
    ls = [r for r in recs if r[0] in ("srun", "mpirun") and "quantize" in r]
    check(len(ls) == 1, f"expected one launch of qdist quantize, got {ls}")
    return ls[0]


def expect_launch(template, call, env, device, resume):
    want = qdist_args(env, device, resume)
    if "mpirun" in template:
        check(call[:7] == ["mpirun", "-n", "4", "--bind-to", "none", "bash", "-c"], f"mpirun line: {call}")
        check(call[8] == "qdist-rank" and call[9:] == want, f"{template}: {call[8:]}\nwanted {want}")
    else:
        check(call == ["srun", "--mpi=pmix", "--kill-on-bad-exit=1"] + want, f"{template}: {call}\nwanted {want}")


def t_command_lines(e):
    for t in TEMPLATES:
        device = "cpu" if "cpu" in t else "cuda"
        rc, out, recs, env = e.run(t)
        check(rc == 0, f"{t}: exit {rc}\n{out}")
        expect_launch(t, launch_call(recs), env, device, False)
        check("attempt 1 on node[1-2], 4 ranks" in out and "resuming" not in out, f"{t}: {out}")
        shared = [r for r in recs if r[0] == "srun" and "test" in r]
        if "multinode" in t or "cpu" in t:
            check(len(shared) == 1 and shared[0][1:5] == ["--nodes=2", "--ntasks-per-node=1",
                                                           "--kill-on-bad-exit=1", "test"], f"{t}: {shared}")
        else:
            check(not shared, f"{t}: unexpected shared check {shared}")
        # settings come from the environment too
        rc, out, recs, env = e.run(t, {"STAGING": "/scratch/st", "BITS": "3", "EXTRA_ARGS": "--quiet"})
        call = launch_call(recs)
        check(rc == 0 and call[-1] == "--quiet" and "/scratch/st" in call and call[call.index("--bits") + 1] == "3",
              f"{t}: env settings not used: {call}")


def t_resume(e):
    for t in TEMPLATES:
        device = "cpu" if "cpu" in t else "cuda"
        rc, out, recs, env = e.run(t, {"SLURM_RESTART_COUNT": "2"})
        check(rc == 0, out)
        expect_launch(t, launch_call(recs), env, device, True)
        check("attempt 3 on" in out and "resuming from" in out, out)
        # a resubmitted job (no restart) finds this run's staging directory: resume it too
        st = os.path.join(e.root, f"staged-{t}")
        os.makedirs(st)
        with open(os.path.join(st, "fingerprint.json"), "w") as f:
            f.write("{}")
        rc, out, recs, env = e.run(t, {"STAGING": st, "SLURM_RESTART_COUNT": "0"})
        check(rc == 0, out)
        expect_launch(t, launch_call(recs), env, device, True)
        # an empty staging directory is not a run to resume
        os.remove(os.path.join(st, "fingerprint.json"))
        rc, out, recs, env = e.run(t, {"STAGING": st})
        expect_launch(t, launch_call(recs), env, device, False)


def t_shared_fs(e):
    for t in ("qdist-multinode-srun.sbatch", "qdist-multinode-mpirun.sbatch", "qdist-cpu-srun.sbatch"):
        rc, out, recs, env = e.run(t, {"STUB_SHARED_FAIL": "1"})
        check(rc == 1, f"{t}: exit {rc}\n{out}")
        check("is not visible on every node of node[1-2]" in out and "shared file system" in out, out)
        check(not [r for r in recs if "quantize" in r], f"{t}: qdist launched anyway: {recs}")
        check(not [f for f in os.listdir(os.path.dirname(env["OUTPUT"])) if f.startswith(".qdist-shared")],
              "marker left behind")


def t_gpu_per_rank(e):
    for t in ("qdist-1node-mpirun.sbatch", "qdist-multinode-mpirun.sbatch"):
        rc, out, recs, env = e.run(t)
        script = launch_call(recs)[7]
        for visible, local, want in (("2,3,5,7", "1", "3"), ("0,1", "3", "1"), ("", "0", "")):
            r = subprocess.run(["bash", "-c", script, "qdist-rank", "bash", "-c", "echo \"[$CUDA_VISIBLE_DEVICES]\""],
                               env=dict(os.environ, CUDA_VISIBLE_DEVICES=visible, OMPI_COMM_WORLD_LOCAL_RANK=local),
                               capture_output=True, text=True, timeout=10)
            check(r.stdout.strip() == f"[{want}]", f"{t}: visible {visible!r} local rank {local}: {r.stdout}{r.stderr}")


def t_requeue_trap(e):
    for t in TEMPLATES:
        rc, out, recs, env = e.run(t, {"STUB_SLEEP": "2", "REQUEUE_MIN_SECONDS": "0"}, signal_after=True)
        req = [r for r in recs if r[0] == "scontrol"]
        check(req == [["scontrol", "requeue", "4242"]], f"{t}: {req}\n{out}")
        check("time limit near: requeueing job 4242" in out, out)
        check(rc == 0, f"{t}: the step's exit status is the script's: {rc}\n{out}")
    rc, out, recs, env = e.run("qdist-1node-srun.sbatch", {"STUB_SLEEP": "2", "SLURM_RESTART_COUNT": "5",
                                                           "REQUEUE_MIN_SECONDS": "0"}, signal_after=True)
    check(not [r for r in recs if r[0] == "scontrol"] and "5 requeues done: not requeueing" in out, out)
    # a signal in the first minute means --time is shorter than the --signal margin: no requeue loop
    rc, out, recs, env = e.run("qdist-cpu-srun.sbatch", {"STUB_SLEEP": "2"}, signal_after=True)
    check(not [r for r in recs if r[0] == "scontrol"] and "shorter than the --signal margin" in out and rc == 0, out)


def t_sbatch_lines(e):
    for t in TEMPLATES:
        text = open(os.path.join(e.repo, "slurm", t)).read()
        sb = dict(re.findall(r"^#SBATCH --([\w-]+)(?:=(\S+))?", text, re.M))
        for k in ("requeue", "open-mode", "signal", "time", "nodes", "ntasks-per-node", "output"):
            check(k in sb, f"{t}: no #SBATCH --{k}")
        check(sb["open-mode"] == "append" and re.fullmatch(r"B:USR1@\d+", sb["signal"]), f"{t}: {sb}")
        if "cpu" in t:
            check(not any(k.startswith("gpus") for k in sb), f"{t}: CPU template asks for GPUs")
        elif "mpirun" in t:
            check(sb.get("gpus-per-node") == sb["ntasks-per-node"], f"{t}: one rank per GPU: {sb}")
        else:
            check(sb.get("gpus-per-task") == "1", f"{t}: one GPU per task: {sb}")
        check(("multinode" in t) == (int(sb["nodes"]) > 1), f"{t}: nodes={sb['nodes']}")
        r = subprocess.run(["bash", "-n", os.path.join(e.repo, "slurm", t)], capture_output=True, text=True)
        check(r.returncode == 0, f"{t}: {r.stderr}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repo", required=True)
    a = ap.parse_args()
    found = sorted(f for f in os.listdir(os.path.join(a.repo, "slurm")) if f.endswith(".sbatch"))
    if found != sorted(TEMPLATES):  # a new template needs its expectations here
        print(f"FAIL slurm/ holds {found}, this test knows {sorted(TEMPLATES)}\n0 passed, 1 failed")
        return 1
    passed = failed = 0
    with tempfile.TemporaryDirectory(prefix="qdslurm-dry-") as root:
        e = Env(a.repo, root)
        for fn in (t_sbatch_lines, t_command_lines, t_resume, t_shared_fs, t_gpu_per_rank, t_requeue_trap):
            try:
                fn(e)
                passed += 1
                print(f"ok   {fn.__name__}")
            except (Failed, subprocess.TimeoutExpired, OSError, ValueError, IndexError) as x:
                failed += 1
                print(f"FAIL {fn.__name__}: {x}")
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
