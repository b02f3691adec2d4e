/* Webhook deliveries: HMAC-SHA256 (keyed with the webhook secret) over the raw bytes of the
 * "Content" object exactly as received, compared in constant time with HashCode. */
#include <ctype.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <string.h>
#include "eo.h"

/* Skip a JSON string starting at its opening quote; returns the position after the closing quote. */
static const char *skip_string(const char *p, const char *end) {
    for (p++; p < end; p++) {
        if (*p == '\\') p++;
        else if (*p == '"') return p + 1;
    }
    return NULL;
}

static const char *skip_ws(const char *p, const char *end) {
    while (p < end && isspace((unsigned char)*p)) p++;
    return p;
}

/* Locate the raw "Content" object among the top-level members: from its '{' to the matching '}'.
 * This only finds bytes; the JSON itself is checked by lua-cjson. */
static int find_content(const char *s, size_t len, const char **from, size_t *n) {
    const char *p = skip_ws(s, s + len), *end = s + len;
    int depth = 0;
    if (p >= end || *p != '{') return 0;
    while (p < end) {
        if (*p == '"') {
            const char *q = skip_string(p, end);
            if (!q) return 0;
            if (depth == 1 && q - p == 9 && memcmp(p, "\"Content\"", 9) == 0) {
                const char *v = skip_ws(q, end);
                if (v < end && *v == ':') {
                    v = skip_ws(v + 1, end);
                    if (v < end && *v == '{') {
                        const char *r = v;
                        int d = 0;
                        while (r < end) {
                            if (*r == '"') {
                                if (!(r = skip_string(r, end))) return 0;
                                continue;
                            }
                            if (*r == '{' || *r == '[') d++;
                            else if ((*r == '}' || *r == ']') && --d == 0) {
                                *from = v;
                                *n = (size_t)(r - v + 1);
                                return 1;
                            }
                            r++;
                        }
                        return 0;
                    }
                }
            }
            p = q;
            continue;
        }
        if (*p == '{' || *p == '[') depth++;
        else if (*p == '}' || *p == ']') depth--;
        p++;
    }
    return 0;
}

/* core.verify_webhook(raw_body, webhook_secret) -> true | false, reason */
static int l_verify_webhook(lua_State *L) {
    size_t len, klen, n = 0, i;
    const char *raw = luaL_checklstring(L, 1, &len), *key = luaL_checklstring(L, 2, &klen), *content = NULL;
    const char *given;
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int maclen = 0;
    char hex[2 * EVP_MAX_MD_SIZE + 1], want[2 * EVP_MAX_MD_SIZE + 1];
    size_t glen;
    int same;
    luaL_argcheck(L, klen > 0, 2, "the webhook secret is empty");
    if (len == 0 || skip_ws(raw, raw + len) == raw + len) {
        lua_pushboolean(L, 0);
        lua_pushliteral(L, "empty body: Exact's validation request when subscribing (answer it with 2xx)");
        return 2;
    }
    lua_pushvalue(L, 1);
    if (!eo_json_decode(L, -1) || !lua_istable(L, -1)) {
        lua_pushboolean(L, 0);
        lua_pushliteral(L, "the body is not a JSON object");
        return 2;
    }
    if (eo_getfield(L, -1, "HashCode") != LUA_TSTRING) {
        lua_pushboolean(L, 0);
        lua_pushliteral(L, "no HashCode in the body");
        return 2;
    }
    given = lua_tolstring(L, -1, &glen);
    if (!find_content(raw, len, &content, &n)) {
        lua_pushboolean(L, 0);
        lua_pushliteral(L, "no Content object in the body");
        return 2;
    }
    if (!HMAC(EVP_sha256(), key, (int)klen, (const unsigned char *)content, n, mac, &maclen))
        return luaL_error(L, "exactonline: HMAC-SHA256 failed");
    for (i = 0; i < maclen; i++) {
        static const char digits[] = "0123456789ABCDEF";
        hex[2 * i] = digits[mac[i] >> 4];
        hex[2 * i + 1] = digits[mac[i] & 15];
    }
    hex[2 * maclen] = '\0';
    if (glen != 2 * (size_t)maclen) {
        same = 0;
    } else {
        for (i = 0; i < glen; i++) want[i] = (char)toupper((unsigned char)given[i]);
        same = CRYPTO_memcmp(hex, want, glen) == 0;
    }
    OPENSSL_cleanse(mac, sizeof mac);
    if (same) {
        lua_pushboolean(L, 1);
        return 1;
    }
    lua_pushboolean(L, 0);
    lua_pushliteral(L, "HashCode does not match: wrong webhook secret, or the body was changed on its way");
    return 2;
}

void eo_open_webhook(lua_State *L) {
    static const luaL_Reg fns[] = {{"verify_webhook", l_verify_webhook}, {NULL, NULL}};
    luaL_setfuncs(L, fns, 0);
}
