"""Uplinks carry batches to the cloud and commands back; MQTT is the default."""
