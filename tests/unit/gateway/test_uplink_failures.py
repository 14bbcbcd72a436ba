"""How the MQTT uplink words a failed connection (gateway.uplink.mqtt.describe_failure)."""

from __future__ import annotations

import aiomqtt
from aiomqtt.exceptions import MqttConnectError
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.reasoncodes import ReasonCode

from gateway.uplink.mqtt import describe_failure


def refused(code: int) -> MqttConnectError:
    return MqttConnectError(ReasonCode(PacketTypes.CONNACK, identifier=code))


def test_connack_refusals_name_the_setting_to_fix() -> None:
    bad = describe_failure(refused(134), tls=False)
    assert bad.startswith("the broker refused the connection ([code:134] Bad user name")
    assert "uplink.password" in bad
    assert "revoked" in describe_failure(refused(135), tls=True)
    assert "uplink.client_id" in describe_failure(refused(133), tls=False)
    assert "cannot check credentials" in describe_failure(refused(136), tls=False)
    assert "uplink.password" in describe_failure(MqttConnectError(4), tls=False)  # MQTT 3.1.1


def test_a_silently_closed_tls_connection_points_at_the_certificate() -> None:
    timed_out = aiomqtt.MqttError("Operation timed out")
    assert "uplink.tls.cert/key" in describe_failure(timed_out, tls=True)
    assert describe_failure(timed_out, tls=False) == "Operation timed out"
    refused_tcp = aiomqtt.MqttError("[Errno 111] Connection refused")
    assert describe_failure(refused_tcp, tls=True) == "[Errno 111] Connection refused"
