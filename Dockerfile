# stigmer-exec: build the fully static launcher, then ship it in a small image.
#
#   docker build -t stigmer-exec .
#
# As an entrypoint (PID 1: forwards signals, reaps zombies, exits with the child's status):
#   ENTRYPOINT ["stigmer-exec", "run", "--init", "--"]
#   CMD ["your-server", "--flag"]        # with STIGMER_EXECUTION_ID and a key or token set
#
# In Kubernetes: the webhook (`stigmer-exec webhook serve`, deploy/kubernetes/) and the
# injected init container both use this image.
#
# As binaries other images copy in (the companion only for remote contexts or PostgreSQL):
#   COPY --from=stigmer-exec /usr/local/bin/stigmer-exec /usr/local/bin/stigmer-exec-full /usr/local/bin/
#
# The build stage runs exactly what `make release` runs on a developer machine and in CI
# (scripts/deps.sh build, the two release builds, strip).

FROM swift:6.3-bookworm AS build
RUN apt-get update && apt-get install -y --no-install-recommends make patchelf && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN make release
# The Kubernetes injector's bundle: the launcher and the companion with the libraries it
# needs, loader and rpath pointing at /stigmer, so they run from an emptyDir in any image
# (the injected init container runs `/stigmer-dist/stigmer-exec install /stigmer`).
RUN scripts/k8s-bundle.sh dist/stigmer-exec dist/stigmer-exec-full /stigmer-dist

FROM debian:bookworm-slim
# stigmer-exec is fully static (libseccomp and SQLite linked in); the companion, for remote
# contexts and PostgreSQL, needs glibc, libstdc++, zlib (in the base image), libsqlite3,
# libseccomp and libyaml (it shares the launch layer and the manifest reader with the launcher).
RUN apt-get update && apt-get install -y --no-install-recommends libsqlite3-0 libseccomp2 libyaml-0-2 && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/dist/stigmer-exec /src/dist/stigmer-exec-full /usr/local/bin/
COPY --from=build /stigmer-dist /stigmer-dist
ENTRYPOINT ["stigmer-exec", "run", "--init", "--"]
CMD ["sh", "-c", "echo give a command to run; exit 64"]
