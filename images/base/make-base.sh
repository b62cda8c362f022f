#!/usr/bin/env bash
# Build a minimal Debian bookworm base image from Debian packages and import it into podman.
#
# No image registry is reachable on some build machines (air-gapped clusters, CI runners
# with only package mirrors), so `make images` makes the base the Dockerfiles start FROM
# itself: debootstrap's minbase variant, trimmed the way the official debian:*-slim images
# are (no docs, man pages, locales or apt lists), with the same apt sources. Elsewhere the
# Dockerfiles build unchanged against the real base image (docs/building-images.md).
#
# usage: images/base/make-base.sh IMAGE_NAME [SUITE]
# env:   DEBIAN_MIRROR  mirror URI (default: the first URI of this machine's own apt
#                       sources, else http://deb.debian.org/debian)
set -euo pipefail

name=${1:?usage: make-base.sh IMAGE_NAME [SUITE]}
suite=${2:-bookworm}

mirror=${DEBIAN_MIRROR:-}
if [[ -z $mirror ]]; then
  # deb822 sources first (Debian 12's default), then one-line sources.
  mirror=$(sed -n 's/^URIs:[[:space:]]*\([^[:space:]]*\/debian\)$/\1/p' \
    /etc/apt/sources.list.d/*.sources 2>/dev/null | head -n1 || true)
fi
if [[ -z $mirror ]]; then
  mirror=$(awk '$1 == "deb" && $2 ~ /\/debian\/?$/ {print $2; exit}' \
    /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null || true)
fi
mirror=${mirror:-http://deb.debian.org/debian}

for tool in debootstrap podman; do
  command -v "$tool" >/dev/null || { echo "make-base.sh: $tool is not installed" >&2; exit 1; }
done

work=$(mktemp -d "${TMPDIR:-/var/tmp}/claudehub-base.XXXXXX")
trap 'rm -rf "$work"' EXIT
root=$work/rootfs

echo "make-base.sh: debootstrap $suite from $mirror" >&2
debootstrap --variant=minbase "$suite" "$root" "$mirror" >"$work/debootstrap.log" 2>&1 || {
  tail -n 20 "$work/debootstrap.log" >&2
  echo "make-base.sh: debootstrap failed (log above)" >&2
  exit 1
}

# The apt sources of the official image: the suite, its updates and security.
rm -f "$root/etc/apt/sources.list"
cat >"$root/etc/apt/sources.list.d/debian.sources" <<SOURCES
Types: deb
URIs: http://deb.debian.org/debian
Suites: $suite $suite-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://deb.debian.org/debian-security
Suites: $suite-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SOURCES

# As in the official slim images: packages installed later leave no docs, man pages or
# translations behind, and apt keeps no downloaded .deb files.
cat >"$root/etc/dpkg/dpkg.cfg.d/docker" <<'DPKG'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/lintian/*
path-exclude /usr/share/linda/*
path-exclude /usr/share/locale/*
DPKG
cat >"$root/etc/apt/apt.conf.d/docker-clean" <<'APT'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
APT
echo 'Acquire::Languages "none";' >"$root/etc/apt/apt.conf.d/docker-no-languages"

find "$root/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete
find "$root/usr/share/doc" -mindepth 1 -type d -empty -delete
rm -rf "$root"/usr/share/man/* "$root"/usr/share/info/* "$root"/usr/share/locale/* \
  "$root"/var/cache/apt/archives/*.deb "$root"/var/cache/apt/*.bin \
  "$root"/var/lib/apt/lists/* "$root"/var/log/* "$root"/tmp/* "$root"/root/.cache
# Written per container by the runtime.
: >"$root/etc/hostname"
: >"$root/etc/resolv.conf"
rm -f "$root/etc/machine-id"

# What went in, for the record (the image's own dpkg database says the same).
dpkg_list=$(chroot "$root" dpkg-query -W -f '${Package}=${Version}\n' | tr '\n' ' ')

tar --numeric-owner -C "$root" -c . | podman import \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'CMD ["bash"]' \
  --change "LABEL org.opencontainers.image.description=\"Debian $suite minbase, built by claudehub's images/base/make-base.sh from $mirror\"" \
  --change "LABEL io.claudehub.base.packages=\"$dpkg_list\"" \
  - "$name" >/dev/null
echo "make-base.sh: imported $name" >&2
