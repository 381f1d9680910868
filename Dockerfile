# sidemux container image.
#   podman build --format docker -t sidemux .           (public debian:bookworm)
#   scripts/container-build                             (no registry: local base)
#   scripts/container-test                              (build, then run it for real)
# BASE must be Debian bookworm (or an image built from it): the build stage
# installs bookworm's packages. The runtime stage is FROM scratch: the binary,
# the shared libraries it links (found by ldd, so the list cannot drift from
# the build) with their Debian copyright files, and the sample config.
ARG BASE=debian:bookworm

# The compilers and -dev packages, on their own stage so that
# scripts/container-test can keep it between runs (scripts/lib/podman.sh).
FROM ${BASE} AS toolchain
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      g++ cmake ninja-build pkg-config \
      libuv1-dev libnghttp2-dev libssl-dev libyaml-cpp-dev node-llhttp \
 && rm -rf /var/lib/apt/lists/*

FROM toolchain AS build
WORKDIR /src
COPY CMakeLists.txt ./
COPY conf/ conf/
COPY parsers/ parsers/
COPY proxy/ proxy/
COPY upstream/ upstream/
RUN cmake -S . -B /build -G Ninja -DCMAKE_BUILD_TYPE=Release -DSIDEMUX_TESTS=OFF \
 && cmake --build /build --parallel "$(nproc)" \
 && cmake --install /build --prefix /usr/local --strip
# Each library lands at the path ldd names (the dynamic loader included), as a
# file rather than a symlink; its package is looked up by file name because
# bookworm's dpkg database still records /lib paths for some and /usr/lib for
# others. glibc >= 2.34 has NSS files/dns in libc.so.6, so
# name resolution needs no extra modules; podman and Kubernetes provide
# /etc/hosts and /etc/resolv.conf.
RUN set -eu; out=/rootfs; \
    mkdir -p "$out/usr/local/bin" "$out/etc/sidemux" "$out/tmp"; chmod 1777 "$out/tmp"; \
    cp /usr/local/bin/sidemux "$out/usr/local/bin/"; \
    for lib in $(ldd /usr/local/bin/sidemux | grep -o '/[^ ]*'); do \
      mkdir -p "$out$(dirname "$lib")"; cp -L "$lib" "$out$lib"; \
      pkg=$(dpkg -S "*/$(basename "$(readlink -f "$lib")")" | cut -d: -f1 | head -n 1); \
      mkdir -p "$out/usr/share/doc/$pkg"; cp -L "/usr/share/doc/$pkg/copyright" "$out/usr/share/doc/$pkg/"; \
    done; \
    echo 'sidemux:x:10001:10001::/nonexistent:/usr/sbin/nologin' >"$out/etc/passwd"; \
    echo 'sidemux:x:10001:' >"$out/etc/group"
COPY conf/sidemux.yaml /rootfs/etc/sidemux/sidemux.yaml

FROM scratch
COPY --from=build /rootfs/ /
# Fail the image build, not the first start, if a library or the config is off.
RUN ["/usr/local/bin/sidemux", "--version"]
RUN ["/usr/local/bin/sidemux", "--check", "-c", "/etc/sidemux/sidemux.yaml"]
USER 10001:10001
EXPOSE 2379
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
  CMD ["/usr/local/bin/sidemux", "probe", "http://127.0.0.1:2379/livez"]
ENTRYPOINT ["/usr/local/bin/sidemux"]
CMD ["-c", "/etc/sidemux/sidemux.yaml"]
