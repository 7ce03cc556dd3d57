# stigmer-exec: build the fully static launcher, then ship it in a small image.
#
#   docker build -t stigmer-exec .
#
# As an entrypoint (PID 1: forwards signals, reaps zombies, exits with the child's status):
#   ENTRYPOINT ["stigmer-exec", "run", "--init", "--"]
#   CMD ["your-server", "--flag"]        # with STIGMER_EXECUTION_ID and a key or token set
#
# As binaries other images copy in (the companion only for remote contexts or PostgreSQL):
#   COPY --from=stigmer-exec /usr/local/bin/stigmer-exec /usr/local/bin/stigmer-exec-full /usr/local/bin/
#
# The build stage runs exactly what `make release` runs on a developer machine and in CI
# (scripts/deps.sh build, the two release builds, strip).

FROM swift:6.3-bookworm AS build
RUN apt-get update && apt-get install -y --no-install-recommends make && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN make release

FROM debian:bookworm-slim
# stigmer-exec is fully static (libseccomp and SQLite linked in); the companion, for remote
# contexts and PostgreSQL, needs glibc, libstdc++, zlib (in the base image), libsqlite3,
# libseccomp and libyaml (it shares the launch layer and the manifest reader with the launcher).
RUN apt-get update && apt-get install -y --no-install-recommends libsqlite3-0 libseccomp2 libyaml-0-2 && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/dist/stigmer-exec /src/dist/stigmer-exec-full /usr/local/bin/
ENTRYPOINT ["stigmer-exec", "run", "--init", "--"]
CMD ["sh", "-c", "echo give a command to run; exit 64"]
