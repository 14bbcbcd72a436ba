"""The broker's admission and topic rules (cloud.broker_auth), without a broker."""

from __future__ import annotations

import pytest

from cloud.auth.device_identity import DeviceIdentity
from cloud.broker_auth import BrokerPolicy, Credentials, Principal, Refused, client_id_allowed

PLANT1 = Principal.device(DeviceIdentity(org_id=1, device_id=10, name="plant1"))
MILL1 = Principal.device(DeviceIdentity(org_id=2, device_id=20, name="mill1"))
INTERNAL = Principal("internal")
ANONYMOUS = Principal("anonymous")


@pytest.mark.parametrize(
    ("topic_filter", "allowed"),
    [
        ("fg/v1/plant1/cmd/+", True),
        ("fg/v1/plant1/#", True),
        ("fg/v1/plant1/telemetry", True),
        ("fg/v1/plant1/", True),
        ("fg/v1/plant1", False),
        ("fg/v1/+/telemetry", False),
        ("fg/v1/#", False),
        ("fg/#", False),
        ("#", False),
        ("+/v1/plant1/cmd/+", False),
        ("fg/+/plant1/cmd/+", False),
        ("$SYS/#", False),
        ("$share/g/fg/v1/plant1/telemetry", False),
        ("fg/v1/plant10/telemetry", False),
        ("fg/v1/mill1/cmd/+", False),
    ],
)
def test_device_subscriptions_stay_under_its_root(topic_filter: str, allowed: bool) -> None:
    assert PLANT1.may_subscribe(topic_filter) is allowed
    assert INTERNAL.may_subscribe(topic_filter) and ANONYMOUS.may_subscribe(topic_filter)


def test_device_publish_and_receive() -> None:
    assert PLANT1.may_publish("fg/v1/plant1/telemetry")
    assert PLANT1.may_publish("fg/v1/plant1/cmd-result/r1")
    assert not PLANT1.may_publish("fg/v1/mill1/telemetry")
    assert not PLANT1.may_publish("fg/v1/plant1")
    assert not PLANT1.may_publish("other/topic")
    assert PLANT1.may_receive("fg/v1/plant1/cmd/r1")
    assert not PLANT1.may_receive("fg/v1/mill1/cmd/r1")


@pytest.mark.parametrize(
    ("client_id", "allowed"),
    [
        ("plant1", True),
        ("fieldgate-plant1", True),
        ("fieldgate-plant1:bench-3", True),
        ("", True),
        ("fieldgate-plant10", False),
        ("fieldgate-plant1-2", False),
        ("plant10", False),
        ("mill1", False),
        ("fieldgate-mill1", False),
    ],
)
def test_client_id_rule(client_id: str, allowed: bool) -> None:
    assert client_id_allowed("plant1", client_id) is allowed


def test_session_take_over() -> None:
    assert PLANT1.may_take_over(None)
    assert PLANT1.may_take_over(PLANT1)
    assert PLANT1.may_take_over(ANONYMOUS)
    assert not PLANT1.may_take_over(MILL1)
    assert not PLANT1.may_take_over(INTERNAL)
    assert not ANONYMOUS.may_take_over(PLANT1)
    assert INTERNAL.may_take_over(PLANT1)


class FakeAuthority:
    """Two gateways: plant1 by token "fgd_plant1" or certificate b"plant1"."""

    def __init__(self) -> None:
        self.fail = False

    async def trusted_cas(self) -> list[str]:
        return []

    async def by_certificate(self, der: bytes) -> DeviceIdentity | None:
        if self.fail:
            raise ConnectionError("database down")
        return PLANT1.identity if der == b"plant1" else None

    async def by_token(self, username: str, password: str) -> DeviceIdentity | None:
        if self.fail:
            raise ConnectionError("database down")
        ok = username == "plant1" and password == "fgd_plant1"
        return PLANT1.identity if ok else None


async def test_admission() -> None:
    authority = FakeAuthority()
    internal = Credentials.generate()
    policy = BrokerPolicy(authority, internal=internal)

    async def admit(
        client_id: str = "fieldgate-plant1",
        username: str | None = None,
        password: str | None = None,
        certificate: bytes | None = None,
    ) -> Principal | Refused:
        decision = await policy.admit(
            client_id=client_id, username=username, password=password,
            tls=certificate is not None, certificate=certificate,
        )
        return decision if isinstance(decision, Principal) else decision[0]

    assert await admit(username="plant1", password="fgd_plant1") == PLANT1
    assert await admit(certificate=b"plant1") == PLANT1
    # on the TLS listener the certificate decides, not a username
    assert await admit(certificate=b"x", username="plant1", password="fgd_plant1") == (
        Refused.NOT_AUTHORIZED
    )
    assert await admit(username="plant1", password="fgd_wrong") == Refused.BAD_USERNAME_PASSWORD
    assert await admit() == Refused.NOT_AUTHORIZED
    assert await admit(client_id="mill1", username="plant1", password="fgd_plant1") == (
        Refused.IDENTIFIER_REJECTED
    )
    assert await admit("x", internal.username, internal.password) == INTERNAL
    assert await admit("x", internal.username, "guess") == Refused.BAD_USERNAME_PASSWORD
    authority.fail = True
    assert await admit(username="plant1", password="fgd_plant1") == Refused.SERVER_UNAVAILABLE

    anonymous = BrokerPolicy(None, internal=internal, allow_anonymous=True)
    assert await anonymous.admit(
        client_id="any", username=None, password=None, tls=False, certificate=None
    ) == ANONYMOUS


def test_credentials_never_show_the_password() -> None:
    credentials = Credentials.generate()
    assert credentials.username.startswith("$fieldgate-cloud-")
    assert credentials.password not in repr(credentials)
    assert credentials.matches(credentials.username, credentials.password)
    assert not credentials.matches(credentials.username, None)
