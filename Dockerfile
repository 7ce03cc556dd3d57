# stigmer-exec: build the fully static launcher, then ship it in a small image.
#
#   docker build -t stigmer-exec .
#
# As an entrypoint (PID 1: forwards signals, reaps zombies, exits with the child's status):
#   ENTRYPOINT ["stigmer-exec", "run", "--init", "--"]
#   CMD ["your-server", "--flag"]        # with STIGMER_EXECUTION_ID and a key or token set
#
# As a binary other images copy in:
#   COPY --from=stigmer-exec /usr/local/bin/stigmer-exec /usr/local/bin/stigmer-exec
#
# The build stage runs exactly what `make release` runs on a developer machine and in CI
# (scripts/deps.sh build, then swift build -c release -Xswiftc -static-executable, strip).

FROM swift:6.3-bookworm AS build
RUN apt-get update && apt-get install -y --no-install-recommends make && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN make release

FROM debian:bookworm-slim
# The binary is fully static (libseccomp and SQLite linked in): no runtime packages needed.
COPY --from=build /src/dist/stigmer-exec /usr/local/bin/stigmer-exec
ENTRYPOINT ["stigmer-exec", "run", "--init", "--"]
CMD ["sh", "-c", "echo give a command to run; exit 64"]
