%framework=tensorflow
%ps=1;%cpu=1;%memory=1Gi
%worker=2;%cpu=1;%memory=1Gi
%cleanPolicy=running
# A TensorFlow-style parameter-server job written with the standard library
# only: no TensorFlow needed to try it. Every replica reads TF_CONFIG, the
# variable the training operator sets in each pod (ciao sets the same one
# for local runs, with localhost addresses). The parameter server keeps a
# shared total; each worker computes its shard and pushes it over TCP.
#
#   ciao run examples/tensorflow_ps_worker.py
import json
import os
import socket
import time

tf_config = json.loads(os.environ["TF_CONFIG"])
task, cluster = tf_config["task"], tf_config["cluster"]
workers = len(cluster["worker"])
print(f"TF_CONFIG task {task['type']}:{task['index']} of cluster {sorted(cluster)}")


def ask(address, message):
    """One request to the parameter server, retried until it is up."""
    host, port = address.rsplit(":", 1)
    for _ in range(200):
        try:
            with socket.create_connection((host, int(port)), timeout=5) as s:
                s.sendall(message.encode() + b"\n")
                return s.makefile().readline().strip()
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"parameter server {address} did not answer")


if task["type"] == "ps":
    port = int(cluster["ps"][task["index"]].rsplit(":", 1)[1])
    total, pushes = 0, 0
    with socket.create_server(("", port)) as server:
        while True:  # parameter servers serve until the job is done
            conn, _ = server.accept()
            with conn:
                verb, *args = conn.makefile().readline().split()
                if verb == "push":
                    total, pushes = total + int(args[1]), pushes + 1
                    print(f"received {args[1]} from worker {args[0]}")
                conn.sendall(f"{pushes} {total}\n".encode())
else:
    me = task["index"]
    shard = range(me * 1000, (me + 1) * 1000)
    value = sum(x * x for x in shard)
    print(f"worker {me} computed {value} on its shard")
    ask(cluster["ps"][0], f"push {me} {value}")
    while True:
        pushes, total = map(int, ask(cluster["ps"][0], "pull").split())
        if pushes == workers:
            break
        time.sleep(0.05)
    print(f"worker {me} sees the total {total} from {pushes} workers")
