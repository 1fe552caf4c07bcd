"""Exact data-parallel training on ``torch.distributed`` (issue 11).

The arithmetic is the protocol's (``protocol.exact.shard``: a step split across workers is
bit-identical to one process). This package owns what is not arithmetic: the process group
(gloo on CPU, NCCL on CUDA), launching the workers (``torch.multiprocessing`` here, or
``proofnet worker`` on other hosts joining a rendezvous), telling them which steps to run, and
noticing that one died.

    group.py    the process group and the all-reduce (``TorchCollective``)
    pool.py     ``WorkerPool``: rank 0 (the trainer or solver) drives ranks 1..N-1
    worker.py   a worker rank's loop: receive a segment, run its shared steps, repeat
"""
