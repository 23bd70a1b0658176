%framework=paddle
%worker=2
# A PaddlePaddle collective job: no master, so worker 0 is the rendezvous
# (PADDLE_MASTER) and PADDLE_NNODES counts the nodes; `paddle.distributed.launch`
# reads the same variables.
import os
import socket
import time

host, port = os.environ["PADDLE_MASTER"].rsplit(":", 1)
nodes = int(os.environ["PADDLE_NNODES"])
me = os.environ["HOSTNAME"]
if "POD_IP_DUMMY" in os.environ:  # the rendezvous node names its own address
    with socket.create_server(("", int(port))) as server:
        joined = []
        while len(joined) < nodes - 1:
            conn, _ = server.accept()
            with conn:
                joined.append(conn.makefile().readline().strip())
    print(f"rendezvous of job {os.environ['PADDLE_JOB_ID']}: {nodes} nodes")
else:
    for _ in range(200):
        try:
            with socket.create_connection((host, int(port)), timeout=10) as conn:
                conn.sendall(f"{me}\n".encode())
            break
        except OSError:
            time.sleep(0.05)
    print(f"joined the rendezvous at {host}:{port}")
