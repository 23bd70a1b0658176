%framework=mpi
%worker=3
# An MPI job: on the cluster the launcher runs `mpirun -n 3 python3 main.py`
# across the worker pods; locally ciao runs the same three ranks with the
# variables Open MPI's mpirun gives each rank. With mpi4py, use
# `MPI.COMM_WORLD.Get_rank()`; this example reads the environment only.
import os

rank = int(os.environ["OMPI_COMM_WORLD_RANK"])
size = int(os.environ["OMPI_COMM_WORLD_SIZE"])
# Each rank sums its slice of 0..999.
chunk = range(rank * 1000 // size, (rank + 1) * 1000 // size)
print(f"rank {rank} of {size} summed {len(chunk)} numbers: {sum(chunk)}")
