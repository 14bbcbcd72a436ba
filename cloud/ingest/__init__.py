"""Ingest: every transport (MQTT today; HTTP and CoAP share it) calls ``cloud.ingest.service``."""
