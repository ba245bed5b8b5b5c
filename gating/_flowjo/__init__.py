"""FlowJo workspaces: XML parsing and conversion of gate trees to strategies."""

from gating._flowjo._workspace import FlowJoError, FlowJoSample, FlowJoWorkspace, read_flowjo

__all__ = ["FlowJoError", "FlowJoSample", "FlowJoWorkspace", "read_flowjo"]
