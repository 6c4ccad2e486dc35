# Builds the one static jitproxy binary into a minimal image that runs as a
# non-root user. Mount the config at /etc/jitproxy/jitproxy.yaml and a volume
# for the data directory (SQLite store, CA keys, recordings) at /var/lib/jitproxy.
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags='-s -w' -o /out/jitproxy ./cmd/jitproxy

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/jitproxy /usr/local/bin/jitproxy
# 65532 is distroless's "nonroot" user; the data volume must be writable by it.
USER 65532:65532
WORKDIR /var/lib/jitproxy
VOLUME ["/var/lib/jitproxy"]
EXPOSE 8080 2222 5433
ENTRYPOINT ["/usr/local/bin/jitproxy"]
CMD ["serve", "--config", "/etc/jitproxy/jitproxy.yaml"]
