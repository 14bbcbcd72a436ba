"""Domain errors of the cloud core. The API renders each as RFC 9457 problem+json
(``type``/``title``/``status`` from the class, ``detail`` from the instance)."""

from __future__ import annotations

from typing import Any, ClassVar


class CloudError(Exception):
    """Base of every error the API turns into a problem response."""

    status: ClassVar[int] = 500
    slug: ClassVar[str] = "internal"
    title: ClassVar[str] = "Internal error"

    def __init__(self, detail: str, **extra: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.extra = extra

    @property
    def type(self) -> str:
        return f"urn:fieldgate:problem:{self.slug}"


class Unauthorized(CloudError):
    status, slug, title = 401, "unauthorized", "Missing or invalid credentials"


class Forbidden(CloudError):
    status, slug, title = 403, "forbidden", "The caller's role does not allow this"


class NotFound(CloudError):
    status, slug, title = 404, "not-found", "Not found"


class Conflict(CloudError):
    status, slug, title = 409, "conflict", "Conflict with the current state"


class AlreadyExists(Conflict):
    slug, title = "already-exists", "Already exists"


class NotAGateway(Conflict):
    slug, title = "not-a-gateway", "The device is not a gateway"


class DeviceOffline(Conflict):
    slug, title = "device-offline", "The device is offline"


class RateLimited(CloudError):
    """Too many requests; ``retry_after`` (whole seconds) becomes the Retry-After header."""

    status, slug, title = 429, "rate-limited", "Too many requests"

    def __init__(self, detail: str, *, retry_after: int) -> None:
        super().__init__(detail)
        self.retry_after = retry_after


class PayloadTooLarge(CloudError):
    status, slug, title = 413, "payload-too-large", "Request body too large"


class UnsupportedMediaType(CloudError):
    status, slug, title = 415, "unsupported-media-type", "Unsupported media type"


class InvalidParameter(CloudError):
    status, slug, title = 422, "invalid-parameter", "Invalid parameter"


class BrokerUnavailable(CloudError):
    status, slug, title = 503, "broker-unavailable", "The MQTT broker is not reachable"


class CommandTimeout(CloudError):
    status, slug, title = 504, "command-timeout", "No answer from the gateway in time"
