%framework=trainjob
%nodes=2
%runtime=torch-distributed
# A Kubeflow Trainer v2 TrainJob: the torch-distributed runtime gives each
# node the PET_* variables torchrun reads (PET_NNODES, PET_NODE_RANK,
# PET_MASTER_ADDR, PET_MASTER_PORT). Node 0 is the master.
import os
import socket
import time

node, nodes = int(os.environ["PET_NODE_RANK"]), int(os.environ["PET_NNODES"])
master = (os.environ["PET_MASTER_ADDR"], int(os.environ["PET_MASTER_PORT"]))
if node == 0:
    with socket.create_server(("", master[1])) as server:
        for _ in range(nodes - 1):
            conn, _ = server.accept()
            conn.close()
    print(f"node 0: all {nodes} nodes are up")
else:
    for _ in range(200):
        try:
            socket.create_connection(master, timeout=10).close()
            break
        except OSError:
            time.sleep(0.05)
    print(f"node {node} of {nodes} reached the master at {master[0]}:{master[1]}")
