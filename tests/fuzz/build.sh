#!/bin/sh
# build.sh — build the libFuzzer target for the ONNX loader under ASan and
# UBSan: tests/fuzz/build.sh [OUT_DIR]  (default: build-fuzz/ at the repo root).
# Needs clang-14 (or $CC), protoc-c, libprotobuf-c-dev and onnx.proto.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
out=${1:-$root/build-fuzz}
cc=${CC:-clang-14}
proto=${ONNX_PROTO:-/usr/include/onnx/onnx.proto}
command -v "$cc" >/dev/null 2>&1 || { echo "build.sh: $cc not found" >&2; exit 3; }
command -v protoc-c >/dev/null 2>&1 || { echo "build.sh: protoc-c not found" >&2; exit 3; }
[ -f "$proto" ] || { echo "build.sh: $proto not found (libonnx-dev)" >&2; exit 3; }
mkdir -p "$out"
gen=$(mktemp -d)
trap 'rm -rf "$gen"' EXIT
protoc-c --proto_path="$(dirname "$proto")" --c_out="$gen" "$proto"
cp "$gen/onnx.pb-c.h" "$gen/onnx.pb-c.c" "$out/"
"$cc" -std=c17 -D_GNU_SOURCE -g -O1 -fno-omit-frame-pointer \
    -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
    -Wall -Wextra -Wno-missing-field-initializers \
    -I"$root/ir" -I"$root/frontend" -I"$out" \
    "$here/fuzz_onnx_load.c" \
    "$root/ir/ir.c" "$root/ir/status.c" "$root/ir/verify.c" "$root/ir/fileio.c" \
    "$root/frontend/onnx_import.c" "$root/frontend/normalize.c" \
    "$out/onnx.pb-c.c" \
    -lprotobuf-c -lm -o "$out/fuzz_onnx_load"
echo "$out/fuzz_onnx_load"
