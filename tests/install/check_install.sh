#!/usr/bin/env bash
# Installs the built library into a scratch prefix, then proves a consumer can use it, the way
# a consumer would, with nothing listed by hand:
# - a core-only program through pkg-config, shared and static (`pkg-config --static`), whose
#   ldd shows none of libcurl, SQLite, hiredis or OpenSSL;
# - a program using the SQLite part through pkg-config o11y-sqlite, shared and static;
# - the README's hello.c;
# - CMake consumers through find_package(o11y) and find_package(o11y COMPONENTS sqlite redis curl).
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
    const o11y_error_def *d = o11y_error_lookup("NOT_FOUND");
    char id[37];
    o11y_trace_new_id(id);
    if (d != &o11y_err_NOT_FOUND || d->status != 404 || strlen(id) != 36)
        return 1;
    printf("ok %s %d %s %s\n", d->code, d->status, o11y_strerror(O11Y_ELIMIT), o11y_version());
    return 0;
}
C
cat > "$work/sqlite_consumer.c" <<'C'
#include <o11y/o11y.h>
#include <o11y/sqlite.h>
#include <stdio.h>
int main(int argc, char **argv)
{
    (void)argc;
    o11y_idem_store *s = NULL;
    if (o11y_idem_store_sqlite(argv[1], &s) != O11Y_OK)
        return 1;
    o11y_idem_store_destroy(s);
    puts("ok sqlite");
    return 0;
}
C
std=(-std=c17 -Wall -Wextra -Werror)
static_of() { # pkg-config --static --libs, with our own libraries taken as archives
    pkg-config --static --libs "$@" | sed -E 's/-lo11y(-[a-z]+)?( |$)/-l:libo11y\1.a /g'
}

# Core, shared, through pkg-config: it runs, and it does not load the optional dependencies.
cc "${std[@]}" $(pkg-config --cflags o11y) "$work/consumer.c" -o "$work/consumer" \
    $(pkg-config --libs o11y)
LD_LIBRARY_PATH=$libdir "$work/consumer" | grep -q '^ok NOT_FOUND 404'
if LD_LIBRARY_PATH=$libdir ldd "$work/consumer" | grep -E 'libcurl|libsqlite3|libhiredis|libcrypto|libssl'; then
    echo "a core-only consumer loads an optional dependency (above)" >&2
    exit 1
fi
readelf -d "$libdir/libo11y.so" | grep -q 'SONAME.*libo11y.so.0'
# Only o11y_ symbols are exported, by every library.
for lib in "$libdir"/libo11y*.so; do
    if nm -D --defined-only "$lib" | awk '{print $3}' | grep -v '^o11y_' | grep -q .; then
        echo "$lib exports symbols outside o11y_:" >&2
        nm -D --defined-only "$lib" | awk '{print $3}' | grep -v '^o11y_' >&2
        exit 1
    fi
done
# Core, static, with the dependencies pkg-config --static names.
cc "${std[@]}" -DO11Y_STATIC_DEFINE $(pkg-config --cflags o11y) "$work/consumer.c" \
    -o "$work/consumer_static" $(static_of o11y)
"$work/consumer_static" | grep -q '^ok'
# The SQLite part, shared and static.
cc "${std[@]}" $(pkg-config --cflags o11y-sqlite) "$work/sqlite_consumer.c" \
    -o "$work/sqlite_consumer" $(pkg-config --libs o11y-sqlite)
LD_LIBRARY_PATH=$libdir "$work/sqlite_consumer" "$work/idem.db" | grep -q '^ok sqlite'
cc "${std[@]}" -DO11Y_STATIC_DEFINE $(pkg-config --cflags o11y-sqlite) "$work/sqlite_consumer.c" \
    -o "$work/sqlite_consumer_static" $(static_of o11y-sqlite)
"$work/sqlite_consumer_static" "$work/idem2.db" | grep -q '^ok sqlite'
# Every part's static query works on a stock system.
for m in o11y o11y-sqlite o11y-redis o11y-curl; do
    pkg-config --static --libs "$m" >/dev/null
done
# The client kit (libo11y-curl), shared and static through pkg-config.
cat > "$work/client_consumer.c" <<'C'
#include <o11y/client.h>
#include <stdio.h>
#include <string.h>
int main(void)
{
    o11y_client_config cfg;
    o11y_client_config_init(&cfg);
    cfg.base_url = "http://127.0.0.1:9";
    o11y_client *c = NULL;
    o11y_client_keys *k = NULL;
    char key[O11Y_CLIENT_KEY_MAX + 1];
    if (o11y_client_create(&cfg, &c) != O11Y_OK || o11y_client_keys_open(NULL, &k) != O11Y_OK ||
        o11y_client_keys_get_or_create(k, "op", key) != O11Y_OK || strlen(key) != 36)
        return 1;
    printf("ok client %s\n", o11y_client_user_message("RATE_LIMITED", 429));
    o11y_client_keys_close(k);
    o11y_client_destroy(c);
    return 0;
}
C
cc "${std[@]}" $(pkg-config --cflags o11y-curl) "$work/client_consumer.c" \
    -o "$work/client_consumer" $(pkg-config --libs o11y-curl)
LD_LIBRARY_PATH=$libdir "$work/client_consumer" | grep -q '^ok client'
# Our archives, with libcurl shared: Debian ships libcurl's own dependencies (ldap, zstd, ...)
# without archives, so a fully static libcurl is not a stock-system build.
cc "${std[@]}" $(pkg-config --cflags o11y-curl) "$work/client_consumer.c" \
    -o "$work/client_consumer_static" -L"$libdir" -l:libo11y-curl.a $(static_of o11y) \
    $(pkg-config --libs libcurl)
"$work/client_consumer_static" | grep -q '^ok client'

# The README example, through pkg-config.
cc "${std[@]}" $(pkg-config --cflags o11y) "$src/examples/hello.c" \
    -o "$work/hello" $(pkg-config --libs o11y)

# CMake, through find_package(o11y), without and with components.
mkdir -p "$work/cmake-consumer"
cp "$work/consumer.c" "$work/sqlite_consumer.c" "$work/client_consumer.c" "$work/cmake-consumer/"
cat > "$work/cmake-consumer/CMakeLists.txt" <<'CM'
cmake_minimum_required(VERSION 3.25)
project(consumer C)
find_package(o11y 0.1 REQUIRED COMPONENTS sqlite redis curl)
add_executable(consumer consumer.c)
target_link_libraries(consumer PRIVATE o11y::o11y)
add_executable(sqlite_consumer sqlite_consumer.c)
target_link_libraries(sqlite_consumer PRIVATE o11y::o11y_sqlite)
add_executable(sqlite_consumer_static sqlite_consumer.c)
target_link_libraries(sqlite_consumer_static PRIVATE o11y::o11y_sqlite_static)
add_executable(client_consumer client_consumer.c)
target_link_libraries(client_consumer PRIVATE o11y::o11y_curl)
CM
cmake -S "$work/cmake-consumer" -B "$work/cmake-consumer/build" \
    -DCMAKE_PREFIX_PATH="$work/prefix" >/dev/null
cmake --build "$work/cmake-consumer/build" >/dev/null
"$work/cmake-consumer/build/consumer" | grep -q '^ok'
"$work/cmake-consumer/build/sqlite_consumer" "$work/idem3.db" | grep -q '^ok sqlite'
"$work/cmake-consumer/build/sqlite_consumer_static" "$work/idem4.db" | grep -q '^ok sqlite'
# (it calls only the kit: libo11y.so.0 is its library's dependency, which RUNPATH does not cover)
LD_LIBRARY_PATH=$libdir "$work/cmake-consumer/build/client_consumer" | grep -q "^ok client"
# A component that does not exist is an error.
cat > "$work/cmake-consumer/CMakeLists.txt" <<'CM'
cmake_minimum_required(VERSION 3.25)
project(consumer C)
find_package(o11y 0.1 REQUIRED COMPONENTS nosuchpart)
CM
if cmake -S "$work/cmake-consumer" -B "$work/cmake-consumer/build2" \
    -DCMAKE_PREFIX_PATH="$work/prefix" >/dev/null 2>&1; then
    echo "find_package accepted a component that does not exist" >&2
    exit 1
fi
echo "install: core and parts through pkg-config (shared, static) and find_package (components)"
