"""The block explorer the node serves at ``/explorer`` (see docs/explorer.md)."""

from services.node.explorer.routes import router

__all__ = ["router"]
