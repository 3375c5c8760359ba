"""The graph's nodes: each one validated parameters + wiring of a core object to the bus.

Every node handles one sample at a time on 64-d vectors: BLAS threads cost more than they save
on matrices that small, and they compete with the graph's other processes for the cores. So a
node process runs BLAS single-threaded unless the user says otherwise (set before numpy loads).
"""

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
