# starttls-proxy as a container image: Debian 12, two stages.
#
#   docker build -t starttls-proxy .
#   docker run -d --name starttls-proxy -p 127.0.0.1:10025:10025 \
#     -v starttls-proxy-state:/var/lib/starttls-proxy starttls-proxy
#   docker run --rm starttls-proxy -c /etc/starttls-proxy/proxy.yaml check example.com
#
# The configuration is /etc/starttls-proxy/proxy.yaml (packaging/proxy.container.yaml:
# listens on 0.0.0.0:10025, relays for loopback and 172.28.0.0/24); mount your own
# there. packaging/compose.yaml runs it as a sidecar of an application.
#
# BASE_IMAGE: any Debian 12 image; `make test-container` passes one it made with
# debootstrap (no registry is reachable there) and builds with podman.
ARG BASE_IMAGE=debian:12-slim

# ---- build-deps: compilers and -dev packages, never shipped ----------------------------
FROM ${BASE_IMAGE} AS build-deps
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      build-essential cmake pkg-config libssl-dev libuv1-dev libc-ares-dev \
      libyaml-dev libcurl4-openssl-dev libsqlite3-dev zlib1g-dev libhiredis-dev \
      libopendkim-dev \
 && rm -rf /var/lib/apt/lists/*

# ---- build: the sources, compiled and installed into /out ------------------------------
FROM build-deps AS build
WORKDIR /src
COPY CMakeLists.txt proxy.yaml.example ./
COPY proxy/ proxy/
COPY policy/ policy/
COPY certs/ certs/
COPY packaging/ packaging/
COPY docs/man/ docs/man/
RUN cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo -DBUILD_TESTING=OFF \
 && cmake --build build -j"$(nproc)" \
 && DESTDIR=/out cmake --install build --prefix /usr/local \
 && /out/usr/local/bin/starttls-proxy --check-config packaging/proxy.container.yaml

# ---- runtime-deps: the shared libraries only, a non-root user -------------------------
FROM ${BASE_IMAGE} AS runtime-deps
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      libssl3 libuv1 libc-ares2 libyaml-0-2 libcurl4 libsqlite3-0 zlib1g libhiredis0.14 \
      libopendkim11 ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10025 --user-group --home-dir /var/lib/starttls-proxy \
      --shell /usr/sbin/nologin starttls-proxy \
 && install -d -o starttls-proxy -g starttls-proxy -m 0750 /var/lib/starttls-proxy \
 && install -d -m 0755 /etc/starttls-proxy

# ---- the image: runtime-deps and the binary --------------------------------------------
FROM runtime-deps
COPY --from=build /out/usr/local/bin/starttls-proxy /usr/local/bin/starttls-proxy
COPY --from=build /out/usr/local/share/doc/starttls-proxy/ /usr/local/share/doc/starttls-proxy/
COPY packaging/proxy.container.yaml /etc/starttls-proxy/proxy.yaml
# Ports above 1024 and no `user:` in the config: the proxy never needs root here.
USER starttls-proxy
VOLUME ["/etc/starttls-proxy", "/var/lib/starttls-proxy"]
EXPOSE 10025 9025
# SIGTERM lets open transactions finish (up to 30 s): give docker stop more than that.
STOPSIGNAL SIGTERM
# /healthz of metrics.listen, through bash's /dev/tcp (the image has no curl binary).
HEALTHCHECK --interval=30s --timeout=5s --start-period=5s \
  CMD ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/9025 && printf 'GET /healthz HTTP/1.0\\r\\n\\r\\n' >&3 && grep -q '^ok' <&3"]
ENTRYPOINT ["/usr/local/bin/starttls-proxy"]
CMD ["-c", "/etc/starttls-proxy/proxy.yaml"]
