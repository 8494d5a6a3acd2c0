#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""A real one-node SLURM on localhost (munged, slurmctld, slurmd from Debian's slurm-wlm and munge),
started in a temporary directory, used, and torn down again.

  slurm_localhost.py --qdist QDIST --hello MPI_HELLO --repo REPO

1. A 2-task batch job through sbatch: `srun -n 2 qdist --version`, an MPI hello-world under
   `srun --mpi=pmix -n 2` and under `mpirun -n 2` (each rank prints rank/size and an Allreduce sum).
2. Every template in slurm/ through the real sbatch with 2 tasks on this node (the GPU #SBATCH lines
   removed, qdist replaced by tests/slurm/qdist-stub.sh that records each rank's arguments): the ranks
   are 0 and 1 and their command line is exactly the one expected.
3. Requeue with automatic resume: the stub sends SIGUSR1 to the batch shell (what --signal=B:USR1@T
   does near the time limit); the template's trap requeues the job; the second attempt must pass
   --resume.
4. Real qdist quantize, 2 ranks, through qdist-cpu-srun.sbatch: rank 0 killed after staging block 1
   (QD_INJECT_KILL) fails the job; the job submitted again resumes by itself; the checkpoint is
   byte-identical to a one-process run. The same through qdist-1node-mpirun.sbatch.
Every wait is bounded, and the daemons and jobs are always stopped. Exit 77 (skip) only when this
machine cannot run SLURM at all (not root, packages missing, daemons that refuse to start), with the
reason; any other failure is exit 1. Standard library only.
"""
import argparse
import ctypes
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

SKIP = 77
TEMPLATES = ["qdist-1node-srun.sbatch", "qdist-1node-mpirun.sbatch", "qdist-multinode-srun.sbatch",
             "qdist-multinode-mpirun.sbatch", "qdist-cpu-srun.sbatch"]


class Skip(Exception):
    pass


def die_with_parent():
    """In the daemon's child process: SIGTERM when this script dies, even by SIGKILL (a CTest timeout),
    so no daemon outlives the test (Linux prctl PR_SET_PDEATHSIG)."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tail(path, n=15):
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-n:])
    except OSError:
        return "(no log)\n"


class Cluster:
    def __init__(self, root):
        self.root = root
        self.procs = []  # (name, Popen)
        self.env = dict(os.environ)
        self.conf = os.path.join(root, "slurm.conf")
        self.env["SLURM_CONF"] = self.conf
        # Open MPI refuses root without these; ranks are on this machine only
        self.env.update(OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
                        OMPI_MCA_rmaps_base_oversubscribe="1")

    def log(self, name):
        return os.path.join(self.root, name + ".log")

    def spawn(self, name, argv):
        out = open(self.log(name + "-stdout"), "w")
        p = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=self.env, start_new_session=True,
                             preexec_fn=die_with_parent)
        out.close()
        self.procs.append((name, p))
        return p

    def run(self, argv, timeout=30, check=True, env=None):
        r = subprocess.run(argv, capture_output=True, text=True, env={**self.env, **(env or {})}, timeout=timeout)
        if check and r.returncode != 0:
            raise AssertionError(f"{' '.join(argv)} exited {r.returncode}: {r.stdout}{r.stderr}")
        return r

    def start(self):
        r = self.root
        key = os.path.join(r, "munge.key")
        with open(key, "wb") as f:
            f.write(os.urandom(1024))
        os.chmod(key, 0o600)
        self.sock = os.path.join(r, "munge.sock")
        self.spawn("munged", ["munged", "--foreground", "--force", f"--key-file={key}", f"--socket={self.sock}",
                              f"--pid-file={r}/munged.pid", f"--log-file={self.log('munged')}",
                              f"--seed-file={r}/munge.seed"])
        if not self.wait_for(lambda: os.path.exists(self.sock), 15):
            raise Skip("munged did not start: " + tail(self.log("munged")) + tail(self.log("munged-stdout")))
        for d in ("state", "spool", "tmp"):  # tmp: PMIx's per-step directories, apart from other clusters
            os.makedirs(os.path.join(r, d), exist_ok=True)
        ctld_port, d_port = free_port(), free_port()
        with open(self.conf, "w") as f:
            f.write(f"""ClusterName=qdtest
SlurmctldHost=localhost(127.0.0.1)
SlurmctldPort={ctld_port}
SlurmdPort={d_port}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={self.sock}
StateSaveLocation={r}/state
SlurmdSpoolDir={r}/spool
TmpFS={r}/tmp
SlurmctldPidFile={r}/slurmctld.pid
SlurmdPidFile={r}/slurmd.pid
SlurmctldLogFile={self.log('slurmctld')}
SlurmdLogFile={self.log('slurmd')}
SlurmctldDebug=info
SlurmdDebug=info
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SwitchType=switch/none
MpiDefault=none
ReturnToService=2
SchedulerParameters=sched_interval=2
MinJobAge=300
KillWait=5
NodeName=localhost NodeAddr=127.0.0.1 CPUs=2 State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=10 State=UP
""")
        self.spawn("slurmctld", ["slurmctld", "-D", "-i", "-f", self.conf])
        self.spawn("slurmd", ["slurmd", "-D", "-N", "localhost", "-f", self.conf])

        def idle():
            for name, p in self.procs:
                if p.poll() is not None:
                    raise Skip(f"{name} exited with {p.returncode} at start-up:\n" + tail(self.log(name)) +
                               tail(self.log(name + "-stdout")))
            s = self.run(["sinfo", "-h", "-o", "%t"], check=False)
            return s.returncode == 0 and s.stdout.strip() == "idle"

        if not self.wait_for(idle, 60):
            raise Skip("the node never became idle:\n" + tail(self.log("slurmctld")) + tail(self.log("slurmd")))

    deadline = None  # monotonic time by which the whole test must be tearing down (set in main)

    @staticmethod
    def wait_for(cond, seconds, step=0.5):
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            if Cluster.deadline is not None and time.monotonic() > Cluster.deadline:
                raise AssertionError("the test ran past its own deadline (QD_SLURM_TEST_BUDGET seconds)")
            if cond():
                return True
            time.sleep(step)
        return False

    def sbatch(self, argv, timeout=30, env=None):
        r = self.run(["sbatch", "--parsable"] + argv, timeout=timeout, env=env)
        return r.stdout.strip().split(";")[0]

    def state(self, job):
        r = self.run(["scontrol", "-o", "show", "job", job], check=False)
        for field in r.stdout.split():
            if field.startswith("JobState="):
                return field.split("=", 1)[1]
        return "UNKNOWN"

    def wait_job(self, job, seconds):
        final = ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "BOOT_FAIL",
                 "DEADLINE", "PREEMPTED")
        st = [None]

        def done():
            st[0] = self.state(job)
            return st[0] in final

        if not self.wait_for(done, seconds):
            self.run(["scancel", job], check=False)
            raise AssertionError(f"job {job} still {st[0]} after {seconds}s\n" + tail(self.log("slurmctld")))
        return st[0]

    def stop(self):
        Cluster.deadline = None  # the teardown has its own bounded waits
        try:
            self.run(["scancel", "--full", "--user=root"], check=False, timeout=10)
            self.wait_for(lambda: not self.run(["squeue", "-h"], check=False, timeout=10).stdout.strip(), 20)
        except Exception:  # noqa: BLE001 - teardown goes on whatever happens
            pass
        for name, p in reversed(self.procs):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for name, p in reversed(self.procs):
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(p.pid, signal.SIGKILL)  # the group this script created for that daemon
                except ProcessLookupError:
                    pass
                p.wait(timeout=10)


def job_two_tasks(c, qdist, hello, work):
    out = os.path.join(work, "two-tasks.out")
    script = os.path.join(work, "two-tasks.sbatch")
    with open(script, "w") as f:
        f.write(f"""#!/bin/bash
#SBATCH --ntasks=2
#SBATCH --time=2
echo "job $SLURM_JOB_ID ntasks=$SLURM_NTASKS nodes=$SLURM_JOB_NODELIST"
srun -n 2 --kill-on-bad-exit=1 {qdist} --version || exit 11
echo "--- srun --mpi=pmix"
srun -n 2 --mpi=pmix --kill-on-bad-exit=1 {hello} || exit 12
echo "--- mpirun"
mpirun -n 2 {hello} || exit 13
""")
    job = c.sbatch([f"--output={out}", script])
    state = c.wait_job(job, 120)
    text = open(out).read() if os.path.exists(out) else "(no output)"
    assert state == "COMPLETED", f"2-task job {job} ended {state}:\n{text}"
    lines = text.splitlines()
    assert sum(1 for l in lines if l.startswith("qdist ")) == 2, text
    srun_part = text.split("--- srun --mpi=pmix")[1].split("--- mpirun")[0]
    mpirun_part = text.split("--- mpirun")[1]
    for part, how in ((srun_part, "srun"), (mpirun_part, "mpirun")):
        for r in (0, 1):
            assert f"mpi-hello rank {r} of 2 on" in part and "rank-sum 1" in part, f"{how}:\n{text}"
    print(f"ok   2-task job {job}: srun qdist --version x2, MPI hello under srun --mpi=pmix and mpirun")


def template_copy(repo, name, work):
    """The template with its GPU requests removed (this node has none); everything else unchanged."""
    src = os.path.join(repo, "slurm", name)
    dst = os.path.join(work, name)
    with open(src) as f:
        lines = [l for l in f if not (l.startswith("#SBATCH") and "--gpus" in l)]
    with open(dst, "w") as f:
        f.writelines(lines)
    return dst


def expected_args(model, output, calib, backend, resume):
    a = ["quantize", "--model", model, "--output", output, "--calib", calib, "--method", "gptq", "--bits", "4",
         "--group-size", "128", "--format", "gptq", "--staging", output + ".qdist-staging", "--schedule", "exact",
         "--backend", backend]
    return a + (["--resume"] if resume else [])


def read_stub_log(path):
    recs = []
    if not os.path.exists(path):
        return recs
    for line in open(path):
        f = dict(kv.split("=", 1) for kv in line.rstrip("\n").split(" ", 4))
        f["args"] = f["args"].split("|")
        recs.append(f)
    return recs


def submit_template(c, repo, name, work, stub, extra_env=None):
    d = os.path.join(work, name.replace(".sbatch", ""))
    os.makedirs(d, exist_ok=True)
    env = dict(QDIST=stub, MODEL=os.path.join(d, "model"), OUTPUT=os.path.join(d, "out"),
               CALIB=os.path.join(d, "calib.jsonl"), STUB_LOG=os.path.join(d, "stub.log"))
    env.update(extra_env or {})
    exports = "ALL," + ",".join(f"{k}={v}" for k, v in env.items())
    out = os.path.join(d, "job.out")
    job = c.sbatch(["--nodes=1", "--ntasks-per-node=2", "--cpus-per-task=1", "--time=3", "--signal=B:USR1@5",
                    f"--output={out}", f"--export={exports}", template_copy(repo, name, work)])
    return job, env, out


def test_templates(c, repo, work, stub):
    jobs = [(name,) + submit_template(c, repo, name, work, stub) for name in TEMPLATES]
    for name, job, env, out in jobs:
        state = c.wait_job(job, 120)
        text = open(out).read() if os.path.exists(out) else "(no output)"
        assert state == "COMPLETED", f"{name}: job {job} ended {state}:\n{text}"
        recs = read_stub_log(env["STUB_LOG"])
        backend = "cpu" if "cpu" in name else "cuda"
        want = expected_args(env["MODEL"], env["OUTPUT"], env["CALIB"], backend, False)
        assert sorted(r["rank"] for r in recs) == ["0", "1"], f"{name}: ranks {recs}\n{text}"
        for r in recs:
            assert r["args"] == want, f"{name}: rank {r['rank']} got {r['args']}\nwanted {want}"
            assert r["attempt"] == "0"
        assert "attempt 1 on localhost, 2 ranks" in text, f"{name}:\n{text}"
        print(f"ok   {name}: job {job}, ranks 0 and 1 ran: {' '.join(want)}")


def test_requeue_resume(c, repo, work, stub):
    name = "qdist-1node-srun.sbatch"
    job, env, out = submit_template(c, repo, name, work + "/requeue", stub,
                                    {"STUB_MODE": "requeue", "REQUEUE_MIN_SECONDS": "0"})
    # attempt 1 asks for the requeue itself. SLURM then holds the job (Reason=BeginTime, about two
    # minutes in 22.05) before starting it again: the test moves its start time to now, nothing else.
    info = [""]

    def requeued():
        info[0] = c.run(["scontrol", "-o", "show", "job", job], check=False).stdout
        return "Restarts=1" in info[0] and "JobState=PENDING" in info[0]

    assert c.wait_for(requeued, 90), f"job {job} was not requeued: {info[0]}\n" + (
        open(out).read() if os.path.exists(out) else "")
    reason = [f for f in info[0].split() if f.startswith(("Reason=", "StartTime="))]
    # the first attempt's step may still be terminating on the node (srun waits up to 7 s for it); a
    # restart launched before the node is idle again can fail at launch under load, so wait for it
    def node_idle():
        s = c.run(["sinfo", "-h", "-o", "%t"], check=False)
        return s.returncode == 0 and s.stdout.strip() == "idle"

    assert c.wait_for(node_idle, 60), "the node did not become idle after the requeue"
    # slurmd refuses a credential issued in the second its job's earlier credential was revoked ("Job
    # credential revoked": the hold SLURM itself puts on a requeued job avoids that); the test's early
    # start keeps clear of it
    time.sleep(3)
    c.run(["scontrol", "update", f"JobId={job}", "StartTime=now"], check=False)
    state = c.wait_job(job, 120)
    text = open(out).read() if os.path.exists(out) else "(no output)"
    recs = read_stub_log(env["STUB_LOG"])
    assert state == "COMPLETED", f"requeue job {job} ended {state}:\n{text}\n{recs}"
    first = [r for r in recs if r["attempt"] == "0"]
    second = [r for r in recs if r["attempt"] == "1"]
    assert sorted(r["rank"] for r in first) == ["0", "1"], f"{recs}\n{text}"
    assert sorted(r["rank"] for r in second) == ["0", "1"], f"{recs}\n{text}"
    no_resume = expected_args(env["MODEL"], env["OUTPUT"], env["CALIB"], "cuda", False)
    with_resume = expected_args(env["MODEL"], env["OUTPUT"], env["CALIB"], "cuda", True)
    assert all(r["args"] == no_resume for r in first), first
    assert all(r["args"] == with_resume for r in second), second
    assert "time limit near: requeueing job" in text and "attempt 2 on localhost" in text, text
    assert f"resuming from {env['OUTPUT']}.qdist-staging" in text, text
    print(f"ok   requeue: job {job} requeued by its USR1 trap ({' '.join(reason)}), attempt 2 passed --resume")


def checkpoint_files(d):
    """Every file of a checkpoint but the run report (which holds timings)."""
    return {n: open(os.path.join(d, n), "rb").read() for n in sorted(os.listdir(d)) if n != "qdist_report.json"}


def test_real_qdist(c, repo, work, qdist):
    """qdist itself through qdist-cpu-srun.sbatch, 2 ranks under srun --mpi=pmix: a run whose rank 0
    is killed after staging block 1 fails the job; the same job submitted again resumes by itself
    and its checkpoint is byte-identical to a one-process run."""
    fix = os.path.join(repo, "fixtures")
    model, calib = os.path.join(fix, "stories260K-hf"), os.path.join(fix, "c4", "c4_train_sample.jsonl")
    group = "-1"  # stories260K's MLP width (172) takes no group size that divides it
    small = "--nsamples 16 --seqlen 128 --quiet --progress none"
    d = os.path.join(work, "real")
    os.makedirs(d)
    ref = os.path.join(d, "reference")
    r = c.run([qdist, "quantize", "--model", model, "--calib", calib, "--output", ref, "--group-size", group,
               "--backend", "cpu"] + small.split(), timeout=300)
    out = os.path.join(d, "out")
    env = dict(QDIST=qdist, MODEL=model, CALIB=calib, OUTPUT=out, GROUP_SIZE=group, EXTRA_ARGS=small)
    script = template_copy(repo, "qdist-cpu-srun.sbatch", d)

    def submit(log, extra):  # the settings travel in sbatch's own environment (--export=ALL)
        return c.sbatch(["--nodes=1", "--ntasks-per-node=2", "--cpus-per-task=1", "--time=5", "--signal=B:USR1@5",
                         f"--output={log}", "--export=ALL", script], env={**env, **extra})

    log1, log2 = os.path.join(d, "attempt1.out"), os.path.join(d, "attempt2.out")
    t0 = time.monotonic()
    job = submit(log1, {"QD_INJECT_KILL": "0:1"})
    state = c.wait_job(job, 300)
    t1 = time.monotonic()
    text1 = open(log1).read() if os.path.exists(log1) else "(no output)"
    staging = out + ".qdist-staging"
    staged = sorted(f for f in os.listdir(staging) if f.endswith(".h5")) if os.path.isdir(staging) else []
    assert state == "FAILED", f"killed run: job {job} ended {state}:\n{text1}"
    assert staged and os.path.exists(os.path.join(staging, "fingerprint.json")), f"{staged}\n{text1}"
    assert not os.path.exists(out), "a failed run left an output directory"
    job2 = submit(log2, {})
    state = c.wait_job(job2, 300)
    t2 = time.monotonic()
    text2 = open(log2).read() if os.path.exists(log2) else "(no output)"
    assert state == "COMPLETED", f"resumed run: job {job2} ended {state}:\n{text2}"
    assert f"resuming from {staging}" in text2, text2
    want = checkpoint_files(ref)

    def same(d):
        got = checkpoint_files(d)
        assert got.keys() == want.keys() and all(got[k] == want[k] for k in want), \
            f"{d} differs from the one-process run: {[k for k in want if got.get(k) != want[k]]}"

    same(out)
    print(f"ok   real qdist, 2 ranks under srun: job {job} killed after staging {len(staged)} block(s), "
          f"job {job2} resumed by itself, checkpoint byte-identical to one process ({os.path.basename(model)}; "
          f"jobs took {t1 - t0:.0f}s and {t2 - t1:.0f}s)")
    # the same run launched by mpirun inside the allocation (the GPU lines of the template removed)
    log3, out3 = os.path.join(d, "mpirun.out"), os.path.join(d, "out-mpirun")
    job3 = c.sbatch(["--nodes=1", "--ntasks-per-node=2", "--cpus-per-task=1", "--time=5", "--signal=B:USR1@5",
                     f"--output={log3}", "--export=ALL", template_copy(repo, "qdist-1node-mpirun.sbatch", d)],
                    env={**env, "OUTPUT": out3, "BACKEND": "cpu"})
    state = c.wait_job(job3, 300)
    text3 = open(log3).read() if os.path.exists(log3) else "(no output)"
    assert state == "COMPLETED", f"mpirun run: job {job3} ended {state}:\n{text3}"
    same(out3)
    print(f"ok   real qdist, 2 ranks under mpirun (qdist-1node-mpirun.sbatch): job {job3}, checkpoint byte-identical")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--qdist", required=True)
    ap.add_argument("--hello", required=True)
    ap.add_argument("--repo", required=True)
    a = ap.parse_args()
    found = sorted(f for f in os.listdir(os.path.join(a.repo, "slurm")) if f.endswith(".sbatch"))
    if found != sorted(TEMPLATES):  # a new template needs its expectations here
        print(f"FAIL slurm/ holds {found}, this test knows {sorted(TEMPLATES)}\n0 passed, 1 failed")
        return 1
    if os.geteuid() != 0:
        print("skip: the localhost SLURM needs root (slurmd runs jobs as their user)")
        return SKIP
    missing = [b for b in ("munged", "slurmctld", "slurmd", "sbatch", "srun", "scontrol", "squeue", "sinfo",
                           "scancel", "mpirun") if not shutil.which(b)]
    if missing:
        print("skip: not installed: " + " ".join(missing) + " (Debian packages slurm-wlm munge openmpi-bin)")
        return SKIP
    # a signal (CTest's timeout, ^C) ends the run through the finally below, which stops the daemons
    def stop_on(signum, _frame):
        raise SystemExit(f"signal {signum}")

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, stop_on)
    # end well before CTest's TIMEOUT (600 s), so the teardown below always runs: a killed test could
    # leave SLURM's step daemons behind
    Cluster.deadline = time.monotonic() + float(os.environ.get("QD_SLURM_TEST_BUDGET", "420"))
    stub = os.path.join(a.repo, "tests", "slurm", "qdist-stub.sh")
    root = tempfile.mkdtemp(prefix="qdslurm-", dir="/tmp")  # short: the munge socket path is limited
    os.chmod(root, 0o755)
    c = Cluster(root)
    ok = False
    try:
        t0 = time.monotonic()
        c.start()
        print(f"ok   munged, slurmctld, slurmd up in {time.monotonic() - t0:.1f}s (node localhost idle)")
        work = os.path.join(root, "work")
        os.makedirs(work + "/requeue")
        for step in (lambda: job_two_tasks(c, a.qdist, a.hello, work), lambda: test_templates(c, a.repo, work, stub),
                     lambda: test_requeue_resume(c, a.repo, work, stub),
                     lambda: test_real_qdist(c, a.repo, work, a.qdist)):
            t0 = time.monotonic()
            step()
            print(f"     ({time.monotonic() - t0:.1f}s)")
        ok = True
    except Skip as e:
        print(f"skip: SLURM cannot run on this machine: {e}")
        return SKIP
    except (AssertionError, subprocess.TimeoutExpired) as e:
        print(f"FAIL {e}")
        for n in ("slurmctld", "slurmd"):
            print(f"--- {n} log tail\n{tail(c.log(n))}")
    finally:
        c.stop()
        if ok or os.environ.get("QD_KEEP_SLURM_DIR") is None:
            shutil.rmtree(root, ignore_errors=True)
    print("1 passed, 0 failed" if ok else "0 passed, 1 failed")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
