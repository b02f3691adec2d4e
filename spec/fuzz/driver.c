/* libFuzzer driver for exactonline.core (make fuzz): links the csrc/ files, and for each input
 * opens a fresh Lua 5.4 state, loads the core and lua-cjson, and calls fuzz(data) from the
 * target script spec/fuzz/<target>.lua. A fresh state per input makes LeakSanitizer exact: any
 * C allocation not freed when the state closes is a leak. A Lua error out of fuzz() means a
 * parser raised on untrusted bytes (they must answer nil, err) or a target's property failed:
 * both abort, so libFuzzer records the input as a crash. */
#include <dlfcn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <lua.h>
#include <lauxlib.h>
#include <lualib.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#if !defined(EO_FUZZ_SCRIPT) || !defined(EO_FUZZ_DIR)
#error "build with -DEO_FUZZ_DIR=\"/abs/spec/fuzz\" -DEO_FUZZ_SCRIPT=\"/abs/spec/fuzz/<target>.lua\""
#endif
#ifndef EO_CJSON_CPATH
#define EO_CJSON_CPATH "/usr/lib/x86_64-linux-gnu/lua/5.4/?.so"
#endif

int luaopen_exactonline_core(lua_State *L);

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    /* keep lua-cjson loaded for the whole run: each state's dlclose then only drops a reference */
    if (!dlopen("/usr/lib/x86_64-linux-gnu/lua/5.4/cjson.so", RTLD_NOW | RTLD_GLOBAL))
        fprintf(stderr, "fuzz: lua-cjson not preloaded: %s\n", dlerror());
    return 0;
}

/* hmac_sha256_hex(key, data): an oracle for the webhook target, independent of csrc/webhook.c. */
static int hmac_sha256_hex(lua_State *L) {
    size_t klen, dlen;
    const char *key = luaL_checklstring(L, 1, &klen), *data = luaL_checklstring(L, 2, &dlen);
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int n = 0, i;
    char hex[2 * EVP_MAX_MD_SIZE];
    if (!HMAC(EVP_sha256(), key, (int)klen, (const unsigned char *)data, dlen, mac, &n))
        return luaL_error(L, "HMAC failed");
    for (i = 0; i < n; i++) {
        hex[2 * i] = "0123456789ABCDEF"[mac[i] >> 4];
        hex[2 * i + 1] = "0123456789ABCDEF"[mac[i] & 15];
    }
    lua_pushlstring(L, hex, 2 * (size_t)n);
    return 1;
}

static void die(lua_State *L, const char *where) {
    fprintf(stderr, "fuzz: %s: %s\n", where, lua_tostring(L, -1));
    abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    lua_State *L = luaL_newstate();
    if (!L) return 0;
    luaL_openlibs(L);
    lua_getglobal(L, "package");
    lua_pushliteral(L, EO_CJSON_CPATH);
    lua_setfield(L, -2, "cpath");
    lua_pushliteral(L, EO_FUZZ_DIR "/?.lua");
    lua_setfield(L, -2, "path");
    lua_pop(L, 1);
    luaL_requiref(L, "exactonline.core", luaopen_exactonline_core, 0);
    lua_pop(L, 1);
    lua_register(L, "hmac_sha256_hex", hmac_sha256_hex);
    if (luaL_dofile(L, EO_FUZZ_SCRIPT) != LUA_OK) die(L, "loading " EO_FUZZ_SCRIPT);
    lua_getglobal(L, "fuzz");
    lua_pushlstring(L, (const char *)data, size);
    if (lua_pcall(L, 1, 0, 0) != LUA_OK) die(L, "fuzz()");
    lua_close(L);
    return 0;
}
