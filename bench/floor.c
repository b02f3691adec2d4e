/* The floor for `make bench`: N authenticated GETs of one URL through ONE reused libcurl easy handle
 * (keep-alive, TLS session kept), body appended into a growing buffer, nothing else.
 *
 *   floor URL N [decode]      token from $BENCH_TOKEN, CA file from $BENCH_CAFILE
 *
 * With "decode", each body is also decoded by lua-cjson inside an embedded Lua 5.4 state
 * (require "cjson"; cjson.decode(body) per call, result dropped): the floor plus the decoding the
 * module has to do anyway. Prints one line: "wall=<s> cpu=<s> n=<N> bytes=<last body size>",
 * measured around the request loop only (process start, TLS handshake and Lua start-up excluded:
 * one warm-up request runs first). Exits non-zero on any non-200 answer. */
#define _GNU_SOURCE
#include <curl/curl.h>
#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

struct buf {
    char *p;
    size_t len, cap;
};

static size_t on_body(char *data, size_t size, size_t n, void *ud) {
    struct buf *b = ud;
    size_t add = size * n;
    if (b->len + add + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 16384;
        while (cap < b->len + add + 1) cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) return 0;
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, data, add);
    b->len += add;
    return add;
}

static size_t on_header(char *data, size_t size, size_t n, void *ud) {
    (void)data;
    (void)ud;
    return size * n;
}

static double wall(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static double cpu(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
}

static int one(CURL *h, struct buf *b, lua_State *L) {
    long status = 0;
    b->len = 0;
    CURLcode rc = curl_easy_perform(h);
    if (rc != CURLE_OK) {
        fprintf(stderr, "floor: %s\n", curl_easy_strerror(rc));
        return 0;
    }
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
    if (status != 200) {
        fprintf(stderr, "floor: HTTP %ld\n", status);
        return 0;
    }
    if (L) {
        lua_pushvalue(L, 1); /* cjson.decode */
        lua_pushlstring(L, b->p, b->len);
        if (lua_pcall(L, 1, 1, 0) != LUA_OK || !lua_istable(L, -1)) {
            fprintf(stderr, "floor: decode failed\n");
            return 0;
        }
        lua_pop(L, 1);
    }
    return 1;
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: floor URL N [decode]\n");
        return 2;
    }
    const char *url = argv[1];
    long n = atol(argv[2]);
    int decode = argc > 3 && strcmp(argv[3], "decode") == 0;
    const char *token = getenv("BENCH_TOKEN");
    const char *cafile = getenv("BENCH_CAFILE");
    if (!token) {
        fprintf(stderr, "floor: BENCH_TOKEN is not set\n");
        return 2;
    }
    lua_State *L = NULL;
    if (decode) {
        L = luaL_newstate();
        luaL_openlibs(L);
        lua_getglobal(L, "require");
        lua_pushliteral(L, "cjson");
        if (lua_pcall(L, 1, 1, 0) != LUA_OK) {
            fprintf(stderr, "floor: require cjson: %s\n", lua_tostring(L, -1));
            return 2;
        }
        lua_getfield(L, -1, "decode");
        lua_replace(L, 1);
        lua_settop(L, 1);
    }
    curl_global_init(CURL_GLOBAL_DEFAULT);
    CURL *h = curl_easy_init();
    char auth[4096];
    snprintf(auth, sizeof auth, "Authorization: Bearer %s", token);
    struct curl_slist *hd = NULL;
    hd = curl_slist_append(hd, auth);
    hd = curl_slist_append(hd, "Accept: application/json");
    struct buf b = {0};
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 1L);
    curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 2L);
    if (cafile) curl_easy_setopt(h, CURLOPT_CAINFO, cafile);
    curl_easy_setopt(h, CURLOPT_ACCEPT_ENCODING, "gzip");
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hd);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &b);
    curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
    if (!one(h, &b, L)) return 1; /* warm-up: connection, TLS handshake */
    double w0 = wall(), c0 = cpu();
    for (long i = 0; i < n; i++)
        if (!one(h, &b, L)) return 1;
    double w1 = wall(), c1 = cpu();
    printf("wall=%.6f cpu=%.6f n=%ld bytes=%zu\n", w1 - w0, c1 - c0, n, b.len);
    curl_slist_free_all(hd);
    curl_easy_cleanup(h);
    curl_global_cleanup();
    free(b.p);
    if (L) lua_close(L);
    return 0;
}
