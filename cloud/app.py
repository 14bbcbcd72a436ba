"""The FastAPI application factory of a cloud node."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

from fastapi import FastAPI, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST

from cloud.api import problems
from cloud.api.limits import BodySizeLimit
from cloud.api.router import api_router
from cloud.auth import keystore
from cloud.auth.ratelimit import RateLimiter
from cloud.broker import EmbeddedBroker, load_broker_tls
from cloud.commands import CommandDispatcher
from cloud.device_api import router as device_api_router
from cloud.identity import StoreDeviceAuthority
from cloud.ingest.mqtt import MqttSubscriber
from cloud.ingest.service import IngestService
from cloud.metrics import CloudMetrics, LatencyHistogram
from cloud.settings import CloudSettings
from cloud.store.db import open_store

log = logging.getLogger(__name__)


def create_app(settings: CloudSettings | None = None) -> FastAPI:
    """A cloud node. Its lifespan opens (and migrates) the store, starts the embedded broker
    when ``settings.mqtt_url`` is None, then the MQTT ingest; all stop in reverse order.

    While running, ``app.state`` holds ``settings``, ``store``, ``ingest`` (with ``stats``),
    ``dispatcher``, ``mqtt`` and, with the embedded broker (all None with an external one):
    ``broker`` (:class:`EmbeddedBroker`), ``broker_port`` and ``broker_tls_port`` (bound
    ports; the TLS one None when off), ``broker_ca_pem`` (the CA gateways trust to verify
    the broker's TLS certificate) and ``trust_ca(pem)`` (makes the TLS listener accept
    certificates of a newly created org CA at once; call it after the commit).
    """
    settings = settings or CloudSettings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            store = await stack.enter_async_context(
                open_store(settings.db_url, schema=settings.db_schema)
            )
            app.state.store = store
            app.state.ca_secret = keystore.resolve_secret(settings)
            username: str | None
            password: str | None
            if settings.mqtt_url is None:
                broker = await stack.enter_async_context(
                    EmbeddedBroker(
                        settings.broker_host,
                        settings.broker_port,
                        authority=StoreDeviceAuthority(store),
                        tls=load_broker_tls(settings),
                        allow_anonymous=settings.broker_allow_anonymous,
                    )
                )
                app.state.broker = broker
                app.state.broker_port = broker.port
                app.state.broker_tls_port = broker.tls_port
                app.state.broker_ca_pem = broker.ca_pem
                app.state.trust_ca = broker.trust
                host = "127.0.0.1" if settings.broker_host in ("0.0.0.0", "::", "") else (
                    settings.broker_host
                )
                port, share_group = broker.port, None
                username, password = broker.internal.username, broker.internal.password
            else:
                (host, port), share_group = settings.mqtt_address(), settings.mqtt_share_group
                username, password = settings.mqtt_credentials()
            latency = LatencyHistogram()
            ingest = IngestService(store, latency=latency)
            app.state.ingest = ingest
            app.state.metrics = CloudMetrics(ingest.stats, latency)
            subscriber = MqttSubscriber(
                host=host,
                port=port,
                client_id=settings.mqtt_client_id,
                ingest=ingest,
                share_group=share_group,
                connect_timeout=settings.mqtt_connect_timeout,
                username=username,
                password=password,
            )
            dispatcher = CommandDispatcher(
                store, subscriber, default_timeout=settings.command_timeout
            )
            subscriber.on_command_result = dispatcher.resolve
            app.state.dispatcher = dispatcher
            app.state.mqtt = await stack.enter_async_context(subscriber)
            yield
            log.info("cloud node stopping")

    app = FastAPI(
        title="fieldgate cloud",
        version="0.1.0",
        summary="Devices, telemetry and commands of fieldgate edge gateways",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.rate_limiter = RateLimiter(settings.rate_limit, settings.rate_limit_burst)
    app.state.mqtt = None
    app.state.broker = None
    app.state.broker_port = None
    app.state.broker_tls_port = None
    app.state.broker_ca_pem = None
    app.state.trust_ca = None
    problems.install(app)
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    app.include_router(api_router)
    app.include_router(device_api_router)

    @app.get("/metrics", include_in_schema=False)
    async def metrics(request: Request) -> Response:
        """Prometheus exposition: aggregate counters and latency, no tenant data."""
        registry = getattr(request.app.state, "metrics", None)
        body = registry.render() if registry is not None else b""
        return Response(body, media_type=CONTENT_TYPE_LATEST)

    return app
