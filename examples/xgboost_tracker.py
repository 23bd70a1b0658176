%framework=xgboost
%master=1
%worker=2
# An XGBoost-style job: the master runs the tracker every worker reports to
# (MASTER_ADDR:MASTER_PORT); RANK 0 is the master. With xgboost installed
# (%packages=xgboost), its collective reads the same variables.
import os
import socket
import time

rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
tracker = (os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"]))
if rank == 0:
    with socket.create_server(("", tracker[1])) as server:
        seen = []
        while len(seen) < world - 1:
            conn, _ = server.accept()
            with conn:
                seen.append(int(conn.makefile().readline()))
                conn.sendall(b"ok\n")
    print(f"tracker: all {world - 1} workers checked in: ranks {sorted(seen)}")
else:
    for _ in range(200):
        try:
            with socket.create_connection(tracker, timeout=10) as conn:
                conn.sendall(f"{rank}\n".encode())
                conn.makefile().readline()
                break
        except OSError:
            time.sleep(0.05)
    print(f"worker rank {rank} of {world} checked in with the tracker")
