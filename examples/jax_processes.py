%framework=jax
%worker=2
# A JAX multi-process job: `jax.distributed.initialize()` reads
# COORDINATOR_ADDRESS, COORDINATOR_PORT, NUM_PROCESSES and PROCESS_ID; this
# example prints them and meets at the coordinator with plain sockets.
import os
import socket
import time

pid, n = int(os.environ["PROCESS_ID"]), int(os.environ["NUM_PROCESSES"])
coordinator = (os.environ["COORDINATOR_ADDRESS"], int(os.environ["COORDINATOR_PORT"]))
print(f"process {pid} of {n}, coordinator {coordinator[0]}:{coordinator[1]}")
if pid == 0:
    with socket.create_server(("", coordinator[1])) as server:
        for _ in range(n - 1):
            conn, _ = server.accept()
            conn.close()
    print("coordinator: every process connected")
else:
    for _ in range(200):
        try:
            socket.create_connection(coordinator, timeout=10).close()
            break
        except OSError:
            time.sleep(0.05)
