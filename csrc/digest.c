/* Secrets we check but never keep: the gateway stores a client key only as its SHA-256, and compares
 * what a client presents in constant time. OpenSSL's libcrypto does the hashing and the comparing. */
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include "eo.h"

/* core.sha256_hex(bytes) --> 64 lower-case hex digits */
static int l_sha256_hex(lua_State *L) {
    static const char digits[] = "0123456789abcdef";
    size_t len;
    const char *s = luaL_checklstring(L, 1, &len);
    unsigned char md[EVP_MAX_MD_SIZE];
    char hex[2 * EVP_MAX_MD_SIZE];
    unsigned int n = 0, i;
    if (!EVP_Digest(s, len, md, &n, EVP_sha256(), NULL)) return luaL_error(L, "exactonline: SHA-256 failed");
    for (i = 0; i < n; i++) {
        hex[2 * i] = digits[md[i] >> 4];
        hex[2 * i + 1] = digits[md[i] & 15];
    }
    OPENSSL_cleanse(md, sizeof md);
    lua_pushlstring(L, hex, 2 * (size_t)n);
    OPENSSL_cleanse(hex, sizeof hex);
    return 1;
}

/* core.secure_equal(a, b) --> whether a and b hold the same bytes; the time taken depends on the
 * lengths only, never on where they differ */
static int l_secure_equal(lua_State *L) {
    size_t la, lb;
    const char *a = luaL_checklstring(L, 1, &la), *b = luaL_checklstring(L, 2, &lb);
    lua_pushboolean(L, la == lb && CRYPTO_memcmp(a, b, la) == 0);
    return 1;
}

void eo_open_digest(lua_State *L) {
    static const luaL_Reg fns[] = {{"sha256_hex", l_sha256_hex}, {"secure_equal", l_secure_equal}, {NULL, NULL}};
    luaL_setfuncs(L, fns, 0);
}
