#!/usr/bin/env python3
"""ciao's image append against buildah and against the registry's floor.

Side by side in one run, on one local docker-registry:
  * cold `ciao build` (release binary, whole process) vs buildah
    (from/copy/config/commit/push with the base already local) appending the
    same kind of 4 KB cell to the same 3-layer base; goal: ciao >= 15x faster;
  * the floor: a bare keep-alive client (examples/registry_floor.rs) sending
    exactly the requests the ciao run needs; goals: cold `ciao build` <= 2x
    its floor, a warm cell in a running kernel (examples/warm_cells.rs)
    <= 1.2x its floor in <= 6 requests;
  * a 200 MB base copied from one registry to another: `ciao build` vs
    `skopeo copy`, wall time and peak RSS; goals: <= 1.0x skopeo's time,
    <= 48 MiB.

Needs: docker-registry, skopeo, umoci, buildah, python3, cargo. Run from the
repository root: python3 benches/build_vs_buildah.py [--iterations N] [--skip-big]
"""

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def sh(*cmd, **kw):
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)
    if r.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{r.stderr}")
    return r.stdout


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def timed(cmd, env=None):
    """Wall seconds and stdout of a child process."""
    start = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    out, err = p.communicate()
    wall = time.perf_counter() - start
    if p.returncode != 0:
        sys.exit(f"{cmd[0]} failed:\n{err.decode()}")
    return wall, out.decode()


def timed_rss(cmd, env=None):
    """Wall seconds and peak RSS (KiB, from wait4) of a child process."""
    start = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    _, status, ru = os.wait4(p.pid, 0)
    wall = time.perf_counter() - start
    err = p.stderr.read().decode()
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"{cmd[0]} failed:\n{err}")
    return wall, ru.ru_maxrss


class Registry:
    def __init__(self, work, name):
        self.port = free_port()
        self.host = f"127.0.0.1:{self.port}"
        d = os.path.join(work, name)
        os.makedirs(d)
        cfg = os.path.join(d, "config.yml")
        with open(cfg, "w") as f:
            f.write(f"version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {d}/data\n"
                    f"http:\n  addr: {self.host}\nhealth:\n  storagedriver:\n    enabled: false\n")
        self.proc = subprocess.Popen(["docker-registry", "serve", cfg], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(500):
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.1).close()
                return
            except OSError:
                time.sleep(0.01)
        sys.exit("docker-registry did not start")

    def stop(self):
        self.proc.terminate()
        self.proc.wait()


def make_base(work, name, files):
    """An OCI layout with one layer per entry of `files` ({path: bytes})."""
    layout = os.path.join(work, name)
    sh("umoci", "init", "--layout", layout)
    sh("umoci", "new", "--image", f"{layout}:img")
    bundle = os.path.join(work, name + "-bundle")
    sh("umoci", "unpack", "--rootless", "--image", f"{layout}:img", bundle)
    for layer in files:
        for path, data in layer.items():
            p = os.path.join(bundle, "rootfs", path.lstrip("/"))
            os.makedirs(os.path.dirname(p), exist_ok=True)
            if isinstance(data, int):
                # Random bytes written by `head`, so this process stays small
                # (a child's peak RSS counts the parent's pages before exec).
                with open(p, "wb") as f:
                    subprocess.run(["head", "-c", str(data), "/dev/urandom"], stdout=f, check=True)
            else:
                with open(p, "wb") as f:
                    f.write(data)
        sh("umoci", "repack", "--refresh-bundle", "--image", f"{layout}:img", bundle)
    sh("umoci", "config", "--image", f"{layout}:img", "--config.cmd", "sh")
    shutil.rmtree(bundle)
    return layout


def push(layout, dest):
    sh("skopeo", "copy", "--quiet", "--dest-tls-verify=false", f"oci:{layout}:img", f"docker://{dest}")


def cell(tag, i):
    s = f"# {tag} {os.getpid()} {i}\n"
    while len(s) < 4096:
        s += "print('a line of a typical notebook cell')\n"
    return s


def med(xs):
    return statistics.median(xs)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--iterations", type=int, default=7)
    ap.add_argument("--warm-cells", type=int, default=30)
    ap.add_argument("--skip-big", action="store_true")
    args = ap.parse_args()
    n = args.iterations

    print("building release binaries…", file=sys.stderr)
    subprocess.run(["cargo", "build", "--release", "--bin", "ciao", "--example", "registry_floor", "--example", "warm_cells"], cwd=ROOT, check=True)
    target_dir = json.loads(sh("cargo", "metadata", "--format-version", "1", "--no-deps", cwd=ROOT))["target_directory"]
    ciao = os.path.join(target_dir, "release", "ciao")
    floor = os.path.join(target_dir, "release", "examples", "registry_floor")
    warm = os.path.join(target_dir, "release", "examples", "warm_cells")

    work = tempfile.mkdtemp(prefix="ciao-bench-")
    regs = []
    try:
        reg = Registry(work, "registry")
        regs.append(reg)
        base = make_base(work, "base", [
            {"/etc/base-release": b"bench base\n", "/usr/local/bin/hello": b"#!/bin/sh\necho hi\n"},
            {"/usr/share/bench/a.bin": os.urandom(200_000)},
            {"/opt/b.bin": os.urandom(1_000_000)},
        ])
        base_repo = "mirror/library/python"
        push(base, f"{reg.host}/{base_repo}:3.11-slim")

        home = os.path.join(work, "home")
        os.makedirs(home)
        env = {k: v for k, v in os.environ.items() if not k.startswith("CIAO_") and k not in ("DOCKER_CONFIG", "SOURCE_DATE_EPOCH")}
        env["HOME"] = home
        cfg = os.path.join(work, "ciao.yaml")
        with open(cfg, "w") as f:
            f.write(f"registry: {reg.host}/bench\nregistries:\n  \"{reg.host}\": {{insecure: true}}\nmirrors:\n  docker.io: {reg.host}/mirror\n")

        # Cold `ciao build`, one process per cell.
        ciao_times = []
        for i in range(n + 1):
            path = os.path.join(work, f"cell{i}.py")
            with open(path, "w") as f:
                f.write(cell("ciao", i))
            wall, _ = timed([ciao, "build", "--config", cfg, path], env=env)
            if i > 0:  # the first run warms the page cache
                ciao_times.append(wall)

        # buildah, base already local.
        root, runroot = os.path.join(work, "buildah-root"), os.path.join(work, "buildah-runroot")
        bargs = ["buildah", "--root", root, "--runroot", runroot, "--storage-driver", "overlay"]
        src = f"docker://{reg.host}/{base_repo}:3.11-slim"
        sh(*bargs, "pull", "--quiet", "--tls-verify=false", src)
        buildah_times = []
        for i in range(n):
            path = os.path.join(work, f"bcell{i}.py")
            with open(path, "w") as f:
                f.write(cell("buildah", i))
            start = time.perf_counter()
            ctr = sh(*bargs, "from", "-q", "--pull=never", "--tls-verify=false", src).strip()
            sh(*bargs, "copy", ctr, path, "/app/main.py")
            sh(*bargs, "config", "--cmd", "python -u /app/main.py", ctr)
            img = sh(*bargs, "commit", "-q", "--format", "oci", ctr).strip()
            sh(*bargs, "push", "--quiet", "--tls-verify=false", img, f"docker://{reg.host}/buildah/python:b{i}")
            buildah_times.append(time.perf_counter() - start)
            sh(*bargs, "rm", ctr)
            sh(*bargs, "rmi", img)

        def floor_run(mode, count, parallel):
            extra = ["parallel"] if parallel else []
            out = sh(floor, reg.host, f"{base_repo}:3.11-slim", f"floor/{mode}{'p' if parallel else ''}", mode, str(count), *extra)
            return json.loads(out.strip().splitlines()[-1])

        cold_seq = floor_run("cold", n, False)
        cold_par = floor_run("cold", n, True)
        warm_seq = floor_run("warm", args.warm_cells, False)
        warm_par = floor_run("warm", args.warm_cells, True)
        wout = json.loads(sh(warm, cfg, str(args.warm_cells), env=env).strip().splitlines()[-1])

        c_ms = med(ciao_times) * 1000
        b_ms = med(buildah_times) * 1000
        print(f"\nsmall base (3 layers, 1.2 MB), 4 KB cell, medians of {n} (warm: {args.warm_cells})")
        print(f"  ciao build (cold process)      {c_ms:8.1f} ms")
        print(f"  buildah from..push             {b_ms:8.1f} ms   -> ciao is {b_ms / c_ms:5.1f}x faster (goal >= 15x)")
        print(f"  floor, cold, sequential        {cold_seq['median_ms']:8.1f} ms   {cold_seq['requests']} requests -> ciao/floor {c_ms / cold_seq['median_ms']:4.2f} (goal <= 2)")
        print(f"  floor, cold, parallel          {cold_par['median_ms']:8.1f} ms   -> ciao/floor {c_ms / cold_par['median_ms']:4.2f}")
        print(f"  warm cell in a running kernel  {wout['median_ms']:8.1f} ms   {max(wout['requests'])} requests max -> {b_ms / wout['median_ms']:5.1f}x faster than buildah")
        print(f"  floor, warm, sequential        {warm_seq['median_ms']:8.1f} ms   {warm_seq['requests']} requests -> warm/floor {wout['median_ms'] / warm_seq['median_ms']:4.2f} (goal <= 1.2)")
        print(f"  floor, warm, parallel          {warm_par['median_ms']:8.1f} ms   -> warm/floor {wout['median_ms'] / warm_par['median_ms']:4.2f}")

        if not args.skip_big:
            big = make_base(work, "big", [{"/data/big.bin": 200 << 20}])
            push(big, f"{reg.host}/big/library/python:3.11-slim")
            big_ciao, big_skopeo = [], []
            for i in range(3):
                # Fresh target registries, so every run really copies the layer.
                t1, t2 = Registry(work, f"ciao-target{i}"), Registry(work, f"skopeo-target{i}")
                regs.extend([t1, t2])
                bcfg = os.path.join(work, f"big{i}.yaml")
                with open(bcfg, "w") as f:
                    f.write(f"registry: {t1.host}/team\nregistries:\n  \"{reg.host}\": {{insecure: true}}\n  \"{t1.host}\": {{insecure: true}}\n"
                            f"mirrors:\n  docker.io: {reg.host}/big\n")
                path = os.path.join(work, f"big{i}.py")
                with open(path, "w") as f:
                    f.write(cell("big", i))
                big_ciao.append(timed_rss([ciao, "build", "--config", bcfg, path], env=env))
                big_skopeo.append(timed_rss(["skopeo", "copy", "--quiet", "--src-tls-verify=false", "--dest-tls-verify=false",
                                             f"docker://{reg.host}/big/library/python:3.11-slim", f"docker://{t2.host}/team/python:x"], env=env))
                t1.stop()
                t2.stop()
                regs.remove(t1)
                regs.remove(t2)
            cw, cr = med([w for w, _ in big_ciao]), max(r for _, r in big_ciao)
            sw, sr = med([w for w, _ in big_skopeo]), max(r for _, r in big_skopeo)
            print("\n200 MB base, registry -> another registry, medians of 3 (RSS: max)")
            print(f"  ciao build    {cw:6.2f} s  {cr / 1024:6.1f} MiB peak RSS")
            print(f"  skopeo copy   {sw:6.2f} s  {sr / 1024:6.1f} MiB peak RSS   -> ciao/skopeo {cw / sw:4.2f} (goal <= 1.0), RSS goal <= 48 MiB")
    finally:
        for r in regs:
            r.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
