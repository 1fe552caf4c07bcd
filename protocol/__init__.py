"""ProofNet protocol: the specification layer.

Deterministic and free of I/O: no database, no HTTP, no files written. PyTorch appears only in
``protocol.exact``, the protocol's "virtual machine" that executes training steps bit-exactly.
"""
