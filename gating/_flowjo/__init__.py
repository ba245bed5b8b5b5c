"""FlowJo workspaces: XML parsing and conversion of gate trees to strategies."""

from gating._flowjo._workspace import FlowJoError, FlowJoSample, FlowJoWorkspace, read_flowjo
from gating._flowjo._write import bind_channels, write_flowjo

__all__ = [
    "FlowJoError",
    "FlowJoSample",
    "FlowJoWorkspace",
    "bind_channels",
    "read_flowjo",
    "write_flowjo",
]
