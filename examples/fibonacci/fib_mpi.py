"""`fib_mpi.py N`: fib(0) .. fib(N) shared out over the MPI ranks (rank r takes every size-th number from r);
rank 0 gathers every rank's part and prints one line naming the world size and the ranks it heard from:

    world size 3, ranks 0 1 2: fib(10) = 55

The line needs the ranks to talk to each other: N copies started without MPI's wiring are each "world size 1,
ranks 0" (a singleton), so a test expecting the line above tells MPI from N independent processes.
"""

import socket
import sys

from mpi4py import MPI

from fib import fib

comm = MPI.COMM_WORLD
rank, size = comm.Get_rank(), comm.Get_size()
n = int(sys.argv[1])
mine = {i: fib(i) for i in range(rank, n + 1, size)}
print(f"rank {rank} of {size} on {socket.gethostname()}: computed fib of {sorted(mine)}", flush=True)
parts = comm.gather((rank, mine), root=0)
if rank == 0:
    assert parts is not None
    values = {i: v for _, part in parts for i, v in part.items()}
    ranks = " ".join(str(r) for r, _ in sorted(parts))
    print(f"world size {size}, ranks {ranks}: fib({n}) = {values[n]}", flush=True)
