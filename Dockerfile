# One image, two roles:
#   docker run IMAGE gateway run -c /etc/fieldgate/gateway.yaml
#   docker run -p 8080:8080 -p 1883:1883 IMAGE cloud serve --host 0.0.0.0 --broker-host 0.0.0.0
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY fieldgate ./fieldgate
COPY gateway ./gateway
COPY adapters ./adapters
COPY cloud ./cloud
COPY simulators ./simulators
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim
RUN useradd --system --create-home --home-dir /var/lib/fieldgate --uid 10001 fieldgate
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
COPY config /etc/fieldgate
USER fieldgate
WORKDIR /var/lib/fieldgate
# The buffer (gateway) and the SQLite database (cloud) live here.
VOLUME ["/var/lib/fieldgate"]
EXPOSE 8080 1883
ENTRYPOINT ["fieldgate"]
CMD ["--help"]
