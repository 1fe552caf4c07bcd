"""Dependencies, as ``Annotated`` aliases (the full-stack-fastapi-template style)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from contracts_sim.chain import Chain
from services.node.runtime import NodeRuntime
from services.node.settings import NodeSettings


def get_runtime(request: Request) -> NodeRuntime:
    runtime: NodeRuntime = request.app.state.runtime
    return runtime


def get_chain(runtime: Annotated[NodeRuntime, Depends(get_runtime)]) -> Chain:
    return runtime.chain


def get_settings(runtime: Annotated[NodeRuntime, Depends(get_runtime)]) -> NodeSettings:
    return runtime.settings


RuntimeDep = Annotated[NodeRuntime, Depends(get_runtime)]
ChainDep = Annotated[Chain, Depends(get_chain)]
SettingsDep = Annotated[NodeSettings, Depends(get_settings)]
