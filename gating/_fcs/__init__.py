"""FCS input/output: the memory-mapped reader, the FCS 3.1 writer and their decode kernels."""

from gating._fcs._channels import channel_lookups, find_channel
from gating._fcs._read import FCSData, read_fcs
from gating._fcs._write import format_spill, write_fcs

__all__ = ["FCSData", "channel_lookups", "find_channel", "format_spill", "read_fcs", "write_fcs"]
