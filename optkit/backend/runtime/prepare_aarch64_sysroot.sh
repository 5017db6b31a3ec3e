#!/usr/bin/env bash
# Prepare (once) and cache an AArch64 user-mode sysroot in which `optkit run --emulate` runs
# AArch64 TVM artifacts under qemu-aarch64-static: Debian's arm64 Python plus aarch64 wheels of
# the TVM runtime and numpy. Instruction counting (`optkit profile`) also needs the dynamic
# qemu-aarch64 (it loads plugins) and the anchor engines in opt/anchors-site: onnxruntime,
# LiteRT (XNNPACK) and ncnn (whose published device timings calibrate the count-based estimate). Idempotent: each complete part is reused.
#
# usage: optkit emulator setup [DEST]     or: bash prepare_aarch64_sysroot.sh [DEST]
# DEST defaults to ${OPTKIT_AARCH64_SYSROOT:-~/.cache/optkit/aarch64-sysroot}
set -euo pipefail

dest="${1:-${OPTKIT_AARCH64_SYSROOT:-$HOME/.cache/optkit/aarch64-sysroot}}"
python_bin="${PYTHON:-python3}"
need_root() { if [ "$(id -u)" != 0 ]; then echo "sudo"; fi; }
SUDO="$(need_root)"
ver() { "$python_bin" -c "import importlib.metadata as m; print(m.version('$1'))"; }
AARCH64_WHEELS=(--only-binary=:all: --python-version 3.11 --platform manylinux_2_28_aarch64
  --platform manylinux_2_27_aarch64 --platform manylinux_2_17_aarch64 --platform manylinux2014_aarch64)

# Both qemu builds: the static one runs artifacts, the dynamic one loads the counting plugin.
if ! command -v qemu-aarch64-static >/dev/null || ! command -v qemu-aarch64 >/dev/null; then
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq qemu-user-static qemu-user
fi

# The anchor engines, pinned: counts are compared across runs, so the code counted must not move.
add_anchors() {
  local site="$1/opt/anchors-site"
  [ -f "$site/.complete" ] && return 0
  local tmp; tmp="$(mktemp -d)"
  "$python_bin" -m pip download -q "${AARCH64_WHEELS[@]}" -d "$tmp/wheels" \
    "onnxruntime==$(ver onnxruntime)" "ai-edge-litert==2.3.0" "ncnn==1.0.20261020" "numpy==$(ver numpy)"
  mkdir -p "$tmp/site"
  for whl in "$tmp/wheels"/*.whl; do
    case "$(basename "$whl")" in numpy-*|ml_dtypes-*) continue ;; esac   # the runtime's numpy serves both
    "$python_bin" -m zipfile -e "$whl" "$tmp/site"
  done
  rm -rf "$site" && mv "$tmp/site" "$site" && touch "$site/.complete"
  rm -rf "$tmp"
}

if [ -f "$dest/.complete" ]; then
  add_anchors "$dest"
  echo "aarch64 sysroot already prepared at $dest"
  exit 0
fi

# Debian arm64 packages for a minimal Python 3.11 (the same Python minor version as the wheels below).
if ! dpkg --print-foreign-architectures | grep -qx arm64; then
  $SUDO dpkg --add-architecture arm64
fi
$SUDO apt-get update -qq
debs=(libc6 libgcc-s1 libstdc++6 zlib1g libexpat1 libffi8 libssl3 libbz2-1.0 liblzma5 libzstd1
      libcrypt1 libuuid1 libsqlite3-0 libtinfo6 libncursesw6 libreadline8 libnsl2 libtirpc3
      libgssapi-krb5-2 libkrb5-3 libk5crypto3 libkrb5support0 libkeyutils1 libcom-err2 libdb5.3
      python3.11-minimal libpython3.11-minimal libpython3.11-stdlib)
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
(cd "$work" && apt-get download -qq "${debs[@]/%/:arm64}")
mkdir -p "$work/root"
for deb in "$work"/*.deb; do dpkg -x "$deb" "$work/root"; done

# aarch64 wheels of the runtime stack, at the versions installed on the host.
mkdir -p "$work/wheels" "$work/root/opt/optkit-site"
"$python_bin" -m pip download -q --no-deps "${AARCH64_WHEELS[@]}" -d "$work/wheels" \
  "apache-tvm==$(ver apache-tvm)" "apache-tvm-ffi==$(ver apache-tvm-ffi)" \
  "numpy==$(ver numpy)" "ml_dtypes==$(ver ml_dtypes)" typing_extensions psutil cloudpickle
for whl in "$work/wheels"/*.whl; do
  "$python_bin" -m zipfile -e "$whl" "$work/root/opt/optkit-site"
done

mkdir -p "$(dirname "$dest")"
# Never delete what we did not make: DEST may only be missing or an empty directory here.
if [ -e "$dest" ] && ! rmdir "$dest" 2>/dev/null; then
  echo "error: $dest exists and is not empty (and not a prepared sysroot); choose another DEST" >&2
  exit 1
fi
add_anchors "$work/root"
mv "$work/root" "$dest"
touch "$dest/.complete"
echo "aarch64 sysroot ready at $dest"
