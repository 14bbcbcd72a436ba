"""What devices call (``/device/v1``): enrolment (a certificate for the caller's own key)
and telemetry over HTTP, authenticated with a device token (``Bearer fgd_...``)."""

from cloud.device_api.router import router

__all__ = ["router"]
