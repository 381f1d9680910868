# sidemux container image.
#   podman build --format docker -t sidemux .           (public debian:bookworm)
#   scripts/container-build                             (no registry: local base)
# BASE must be Debian bookworm (or an image built from it): the runtime stage
# installs bookworm's library packages.
ARG BASE=debian:bookworm

FROM ${BASE} AS build
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      g++ cmake ninja-build pkg-config \
      libuv1-dev libnghttp2-dev libssl-dev libyaml-cpp-dev node-llhttp \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY CMakeLists.txt ./
COPY conf/ conf/
COPY parsers/ parsers/
COPY proxy/ proxy/
COPY upstream/ upstream/
RUN cmake -S . -B /build -G Ninja -DCMAKE_BUILD_TYPE=Release -DSIDEMUX_TESTS=OFF \
 && cmake --build /build --parallel "$(nproc)" \
 && cmake --install /build --prefix /usr/local --strip

FROM ${BASE}
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      libuv1 libnghttp2-14 libssl3 libyaml-cpp0.7 \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --user-group --no-create-home \
      --home-dir /nonexistent --shell /usr/sbin/nologin sidemux
COPY --from=build /usr/local/bin/sidemux /usr/local/bin/sidemux
COPY conf/sidemux.yaml /etc/sidemux/sidemux.yaml
# Fail the image build, not the first start, if a library or the config is off.
RUN /usr/local/bin/sidemux --version \
 && /usr/local/bin/sidemux --check -c /etc/sidemux/sidemux.yaml
USER 10001:10001
EXPOSE 2379
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
  CMD ["/usr/local/bin/sidemux", "probe", "http://127.0.0.1:2379/livez"]
ENTRYPOINT ["/usr/local/bin/sidemux"]
CMD ["-c", "/etc/sidemux/sidemux.yaml"]
