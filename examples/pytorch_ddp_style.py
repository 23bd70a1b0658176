%framework=pytorch
%master=1;%cpu=1;%memory=1Gi
%worker=2;%cpu=1;%memory=1Gi
# A PyTorch DDP-style job with plain sockets: every replica reads the
# variables torch.distributed's env:// rendezvous reads (MASTER_ADDR,
# MASTER_PORT, WORLD_SIZE, RANK), the master (rank 0) gathers one value per
# rank and sends every rank the sum back, an all-reduce by hand. With
# PyTorch installed, `torch.distributed.init_process_group("gloo")` finds the
# same variables.
import os
import socket
import time

rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
master = (os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"]))
print(f"rank {rank} of {world}, rendezvous at {master[0]}:{master[1]}")
value = (rank + 1) * 10

if rank == 0:
    with socket.create_server(("", master[1])) as server:
        peers, total = [], value
        while len(peers) < world - 1:
            conn, _ = server.accept()
            r, v = map(int, conn.makefile().readline().split())
            print(f"rank {r} joined with {v}")
            peers.append(conn)
            total += v
        for conn in peers:
            conn.sendall(f"{total}\n".encode())
            conn.close()
else:
    for _ in range(200):
        try:
            conn = socket.create_connection(master, timeout=10)
            break
        except OSError:
            time.sleep(0.05)
    else:
        raise SystemExit(f"the master at {master} did not answer")
    with conn:
        conn.sendall(f"{rank} {value}\n".encode())
        total = int(conn.makefile().readline())
print(f"rank {rank}: all-reduce sum = {total}")
