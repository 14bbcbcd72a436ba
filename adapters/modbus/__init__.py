"""Modbus TCP adapter (``type: modbus``): block reads planned before any I/O, typed writes.

The entry point ``fieldgate.adapters: modbus = "adapters.modbus:plugin"`` resolves to
:data:`plugin`. See ``README.md`` next to this file for configuration and limits.
"""

from __future__ import annotations

from adapters.base import AdapterPlugin
from adapters.modbus.adapter import ModbusAdapter
from adapters.modbus.config import ModbusDeviceConfig, ModbusTagConfig

__all__ = ["ModbusAdapter", "ModbusDeviceConfig", "ModbusTagConfig", "plugin"]

plugin = AdapterPlugin(name="modbus", config_model=ModbusDeviceConfig, factory=ModbusAdapter)
