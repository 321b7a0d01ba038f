#!/usr/bin/env bash
# Installs the built library into a scratch prefix, then proves a consumer can use it:
# a program built through pkg-config (shared and static) and one through find_package(o11y).
set -euo pipefail
build=$1
src=$2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

cmake --install "$build" --prefix "$work/prefix" >/dev/null
pcdir=$(dirname "$(find "$work/prefix" -name o11y.pc | head -n 1)")
export PKG_CONFIG_PATH=$pcdir
libdir=$(pkg-config --variable=libdir o11y)

cat > "$work/consumer.c" <<'C'
#include <o11y/o11y.h>
#include <stdio.h>
#include <string.h>
int main(void)
{
    const o11y_error_def *d = o11y_error_lookup("EPISODE_NUMBER_CONFLICT");
    char id[37];
    o11y_trace_new_id(id);
    if (!d || d->status != 409 || strlen(id) != 36)
        return 1;
    printf("ok %s %d %s\n", d->code, d->status, o11y_strerror(O11Y_ELIMIT));
    return 0;
}
C
# Shared, through pkg-config.
cc -std=c17 -Wall -Wextra -Werror $(pkg-config --cflags o11y) "$work/consumer.c" \
    -o "$work/consumer" $(pkg-config --libs o11y)
LD_LIBRARY_PATH=$libdir "$work/consumer" | grep -q '^ok EPISODE_NUMBER_CONFLICT 409'
readelf -d "$libdir/libo11y.so" | grep -q 'SONAME.*libo11y.so.0'
# Only o11y_ symbols are exported.
if nm -D --defined-only "$libdir/libo11y.so" | awk '{print $3}' | grep -v '^o11y_' | grep -q .; then
    echo "exported symbols outside o11y_:" >&2
    nm -D --defined-only "$libdir/libo11y.so" | awk '{print $3}' | grep -v '^o11y_' >&2
    exit 1
fi
# Static libo11y.a; its dependencies stay the system's shared libraries.
cc -std=c17 -Wall -Wextra -Werror -DO11Y_STATIC_DEFINE $(pkg-config --cflags o11y) \
    "$work/consumer.c" -o "$work/consumer_static" "$libdir/libo11y.a" \
    $(pkg-config --libs libmicrohttpd jansson libcurl sqlite3 hiredis libcrypto) -lpthread -lm
"$work/consumer_static" | grep -q '^ok'
# The README example, through pkg-config.
cc -std=c17 -Wall -Wextra -Werror $(pkg-config --cflags o11y jansson) "$src/examples/hello.c" \
    -o "$work/hello" $(pkg-config --libs o11y jansson)

# CMake, through find_package(o11y).
mkdir -p "$work/cmake-consumer"
cp "$work/consumer.c" "$work/cmake-consumer/"
cat > "$work/cmake-consumer/CMakeLists.txt" <<'CM'
cmake_minimum_required(VERSION 3.25)
project(consumer C)
find_package(o11y 0.1 REQUIRED)
add_executable(consumer consumer.c)
target_link_libraries(consumer PRIVATE o11y::o11y)
CM
cmake -S "$work/cmake-consumer" -B "$work/cmake-consumer/build" \
    -DCMAKE_PREFIX_PATH="$work/prefix" >/dev/null
cmake --build "$work/cmake-consumer/build" >/dev/null
"$work/cmake-consumer/build/consumer" | grep -q '^ok'
echo "install: pkg-config (shared, static) and find_package consumers built and ran"
