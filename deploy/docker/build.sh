#!/usr/bin/env bash
# Builds kvd's image (default kvd:dev) FROM scratch, without pulling any
# image: the static binaries are compiled here on the host and sent to
# docker in a small build context (see Dockerfile). `make docker` runs this.
#
# Environment: IMAGE (kvd:dev), VERSION (git describe), REVISION (git HEAD),
# CREATED (now, RFC 3339), GO (go), GOARCH (the host's).
set -euo pipefail
cd "$(dirname "$0")/../.."

IMAGE=${IMAGE:-kvd:dev}
GO=${GO:-go}
VERSION=${VERSION:-$(git describe --tags --always --dirty 2>/dev/null || echo dev)}
REVISION=${REVISION:-$(git rev-parse HEAD 2>/dev/null || echo unknown)}
CREATED=${CREATED:-$(date -u +%Y-%m-%dT%H:%M:%SZ)}
GOARCH=${GOARCH:-$("$GO" env GOARCH)}
UID_GID=65532

ctx=$(mktemp -d "${TMPDIR:-/tmp}/kvd-image.XXXXXX")
trap 'rm -rf "$ctx"' EXIT

mkdir -p "$ctx/rootfs/usr/local/bin" "$ctx/rootfs/etc" "$ctx/data" "$ctx/tls"
chmod 0700 "$ctx/data" "$ctx/tls"
for cmd in kvd kvctl kvdutil; do
	CGO_ENABLED=0 GOOS=linux GOARCH="$GOARCH" "$GO" build -trimpath \
		-ldflags "-s -w -X main.version=$VERSION" \
		-o "$ctx/rootfs/usr/local/bin/$cmd" "./cmd/$cmd"
done
chmod 0755 "$ctx/rootfs/usr/local/bin/"*
cat >"$ctx/rootfs/etc/passwd" <<PASSWD
root:x:0:0:root:/:/sbin/nologin
nonroot:x:$UID_GID:$UID_GID:kvd:/var/lib/kvd:/sbin/nologin
PASSWD
cat >"$ctx/rootfs/etc/group" <<GROUP
root:x:0:
nonroot:x:$UID_GID:
GROUP
chmod 0644 "$ctx/rootfs/etc/passwd" "$ctx/rootfs/etc/group"
cp deploy/docker/Dockerfile "$ctx/Dockerfile"

# BuildKit needs the buildx plugin; without it, use the classic builder
# (which also handles this Dockerfile) instead of failing.
if [ -z "${DOCKER_BUILDKIT:-}" ] && ! docker buildx version >/dev/null 2>&1; then
	export DOCKER_BUILDKIT=0
fi

old=$(docker image inspect -f '{{.Id}}' "$IMAGE" 2>/dev/null || true)
docker build --force-rm -t "$IMAGE" \
	--build-arg VERSION="$VERSION" \
	--build-arg REVISION="$REVISION" \
	--build-arg CREATED="$CREATED" \
	"$ctx"
new=$(docker image inspect -f '{{.Id}}' "$IMAGE")
# The image this one replaced is now untagged: remove it unless a container
# still uses it.
if [ -n "$old" ] && [ "$old" != "$new" ]; then
	docker image rm "$old" >/dev/null 2>&1 || true
fi
echo "built $IMAGE ($VERSION, $(docker image inspect -f '{{.Size}}' "$IMAGE" | awk '{printf "%.1f MB", $1/1e6}'))"
