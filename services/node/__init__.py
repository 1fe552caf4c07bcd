"""The chain node: a FastAPI app over the ledger (``create_app``), configured by
``NodeSettings`` (environment prefix ``PROOFNET_``)."""

from services.node.app import create_app, open_chain
from services.node.settings import NodeSettings

__all__ = ["NodeSettings", "create_app", "open_chain"]
