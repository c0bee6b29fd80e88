#!/usr/bin/env bash
# Makes a busybox root filesystem in DIR: Debian's static busybox, one symlink per applet,
# /etc/passwd and /etc/group, and the empty directories a container mounts over.
# Usage: hack/busybox-rootfs.sh DIR
set -euo pipefail
rootfs="${1:?usage: hack/busybox-rootfs.sh DIR}"
mkdir -p "$rootfs"/{bin,etc,proc,sys,dev,tmp,root}
chmod 1777 "$rootfs/tmp"
cp /bin/busybox "$rootfs/bin/busybox"
for applet in $(/bin/busybox --list); do
  [ "$applet" = busybox ] || ln -s busybox "$rootfs/bin/$applet"
done
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' \
  >"$rootfs/etc/passwd"
printf 'root:x:0:\nnogroup:x:65534:\n' >"$rootfs/etc/group"
