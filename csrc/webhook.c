/* Webhook deliveries: HMAC-SHA256 (keyed with the webhook secret) over the raw bytes of the one
 * "Content" object exactly as received, compared in constant time with HashCode.
 *
 * lua-cjson judges the JSON and decodes every name and value. The scan below only finds where
 * each top-level member's bytes lie, and runs on bodies cjson has already accepted, so the bytes
 * hashed are the bytes cjson (and any other parser) reads as Content: a body naming Content or
 * HashCode twice (in any spelling, "Con\u0074ent" included) is refused, never guessed at.
 * spec/fuzz/webhook.lua checks that the scan agrees with cjson on every input. */
#include <limits.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <string.h>
#include "json.h"

typedef struct {
    const char *key, *val; /* the name's token (quotes included) and the value's bytes */
    size_t klen, vlen;
} member;

/* JSON's whitespace, and only it (as lua-cjson reads it). */
static const char *skip_ws(const char *p, const char *end) {
    while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')) p++;
    return p;
}

/* p at a string's opening quote: the position after its closing quote, or NULL. */
static const char *skip_string(const char *p, const char *end) {
    for (p++; p < end; p++) {
        if (*p == '\\') p++;
        else if (*p == '"') return p + 1;
    }
    return NULL;
}

/* p at a value: the position after it, or NULL. Objects and arrays by bracket depth (cjson has
 * checked they nest), scalars up to the next separator. */
static const char *skip_value(const char *p, const char *end) {
    const char *s = p;
    size_t depth = 0;
    if (p >= end) return NULL;
    if (*p == '"') return skip_string(p, end);
    if (*p == '{' || *p == '[') {
        while (p < end) {
            if (*p == '"') {
                if (!(p = skip_string(p, end))) return NULL;
                continue;
            }
            if (*p == '{' || *p == '[') depth++;
            else if ((*p == '}' || *p == ']') && --depth == 0) return p + 1;
            p++;
        }
        return NULL;
    }
    while (p < end && !strchr(",}] \t\n\r", *p)) p++;
    return p > s ? p : NULL;
}

/* The next top-level member of the object whose '{' was passed: 1 and *m filled, 0 at the
 * closing '}', -1 when the bytes are not the object cjson accepted. *pp moves past it. */
static int next_member(const char **pp, const char *end, int first, member *m) {
    const char *p = skip_ws(*pp, end), *q;
    if (p < end && *p == '}') return 0;
    if (!first) {
        if (p >= end || *p != ',') return -1;
        p = skip_ws(p + 1, end);
    }
    if (p >= end || *p != '"' || !(q = skip_string(p, end))) return -1;
    m->key = p;
    m->klen = (size_t)(q - p);
    p = skip_ws(q, end);
    if (p >= end || *p != ':') return -1;
    p = skip_ws(p + 1, end);
    if (!(q = skip_value(p, end))) return -1;
    m->val = p;
    m->vlen = (size_t)(q - p);
    *pp = q;
    return 1;
}

/* Push the member's decoded name: its bytes when it has no escape (cjson copies those as they
 * are), else what cjson decodes the token to. 0 (nothing pushed) if cjson refuses it. */
static int push_name(lua_State *L, const member *m) {
    if (!memchr(m->key, '\\', m->klen)) {
        lua_pushlstring(L, m->key + 1, m->klen - 2);
        return 1;
    }
    lua_pushlstring(L, m->key, m->klen);
    if (!eo_json_decode(L, -1) || lua_type(L, -1) != LUA_TSTRING) {
        lua_pop(L, 2);
        return 0;
    }
    lua_remove(L, -2);
    return 1;
}

static int is_name(lua_State *L, int idx, const char *name) {
    size_t n;
    const char *s = lua_tolstring(L, idx, &n);
    return n == strlen(name) && memcmp(s, name, n) == 0;
}

/* Decode the body at idx with cjson and check it is an object: pushes it and returns the start
 * of its bytes (after leading whitespace), or NULL with nothing pushed. */
static const char *decode_object(lua_State *L, int idx, size_t *len) {
    const char *raw = lua_tolstring(L, idx, len), *p = skip_ws(raw, raw + *len);
    /* cjson stops reading at a NUL, so bytes after one would be unseen by it: refuse them all */
    if (memchr(raw, '\0', *len) || p == raw + *len || *p != '{') return NULL;
    lua_pushvalue(L, idx);
    if (!eo_json_decode(L, -1) || !lua_istable(L, -1)) {
        lua_pop(L, 2);
        return NULL;
    }
    lua_remove(L, -2);
    *len -= (size_t)(p - raw);
    return p;
}

static int refuse(lua_State *L, const char *why) {
    lua_pushboolean(L, 0);
    lua_pushstring(L, why);
    return 2;
}

/* core.verify_webhook(raw_body, webhook_secret) -> true, content | false, reason */
static int l_verify_webhook(lua_State *L) {
    size_t len = 0, klen = 0, glen, i;
    const char *key, *given, *p, *end;
    member m, content = {0};
    int n_content = 0, n_hash = 0, first = 1, r, same;
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int maclen = 0;
    char hex[2 * EVP_MAX_MD_SIZE + 1], want[2 * EVP_MAX_MD_SIZE + 1];

    if (!lua_isnoneornil(L, 1)) (void)luaL_checklstring(L, 1, &len);
    key = lua_isnoneornil(L, 2) ? NULL : luaL_checklstring(L, 2, &klen);
    if (!key || klen == 0)
        return refuse(L, "no webhook secret: pass the webhook secret of your app in Exact's App Centre "
                         "(not the client secret)");
    luaL_argcheck(L, klen <= INT_MAX, 2, "the webhook secret is too long");
    if (len == 0 || skip_ws(lua_tostring(L, 1), lua_tostring(L, 1) + len) == lua_tostring(L, 1) + len)
        return refuse(L, "empty body: Exact's validation request when subscribing (answer it with 2xx)");
    lua_settop(L, 2);
    if (!(p = decode_object(L, 1, &len))) return refuse(L, "the body is not a JSON object");
    end = p + len;
    p++;
    while ((r = next_member(&p, end, first, &m)) == 1) {
        first = 0;
        if (!push_name(L, &m)) return refuse(L, "the body is not a JSON object");
        if (is_name(L, -1, "Content")) {
            content = m;
            n_content++;
        } else if (is_name(L, -1, "HashCode")) {
            n_hash++;
        }
        lua_pop(L, 1);
    }
    if (r < 0) return refuse(L, "the body is not a JSON object");
    if (n_content > 1 || n_hash > 1)
        return refuse(L, n_content > 1 ? "the body has more than one Content: a delivery has one (refused)"
                                       : "the body has more than one HashCode: a delivery has one (refused)");
    if (n_hash == 0 || eo_getfield(L, 3, "HashCode") != LUA_TSTRING)
        return refuse(L, "no HashCode in the body");
    given = lua_tolstring(L, -1, &glen);
    if (n_content == 0 || content.val[0] != '{') return refuse(L, "no Content object in the body");
    if (!HMAC(EVP_sha256(), key, (int)klen, (const unsigned char *)content.val, content.vlen, mac, &maclen))
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
        for (i = 0; i < glen; i++)
            want[i] = (char)(given[i] >= 'a' && given[i] <= 'z' ? given[i] - 'a' + 'A' : given[i]);
        same = CRYPTO_memcmp(hex, want, glen) == 0;
    }
    OPENSSL_cleanse(mac, sizeof mac);
    if (!same) return refuse(L, "HashCode does not match: wrong webhook secret, or the body was changed on its way");
    /* what was hashed, decoded: the caller never needs to decode the raw body itself */
    lua_pushlstring(L, content.val, content.vlen);
    if (!eo_json_decode(L, -1) || !lua_istable(L, -1)) return refuse(L, "no Content object in the body");
    lua_pushboolean(L, 1);
    lua_insert(L, -2);
    return 2;
}

/* core.webhook_members(raw_body) -> { {name, key, value}, … } | nil: the top-level members as the
 * scan sees them (decoded name, the name's raw token, the value's raw bytes), for the fuzz target
 * to hold against cjson. nil when cjson does not read the body as an object. */
static int l_webhook_members(lua_State *L) {
    size_t len;
    const char *p, *end;
    member m;
    int r, first = 1;
    lua_Integer n = 0;
    luaL_checkstring(L, 1);
    lua_settop(L, 1);
    if (!(p = decode_object(L, 1, &len))) return 0;
    end = p + len;
    p++;
    lua_newtable(L);
    while ((r = next_member(&p, end, first, &m)) == 1) {
        first = 0;
        lua_createtable(L, 3, 0);
        if (!push_name(L, &m)) return 0;
        lua_rawseti(L, -2, 1);
        lua_pushlstring(L, m.key, m.klen);
        lua_rawseti(L, -2, 2);
        lua_pushlstring(L, m.val, m.vlen);
        lua_rawseti(L, -2, 3);
        lua_rawseti(L, -2, ++n);
    }
    if (r < 0) return 0;
    return 1;
}

void eo_open_webhook(lua_State *L) {
    static const luaL_Reg fns[] = {
        {"verify_webhook", l_verify_webhook}, {"webhook_members", l_webhook_members}, {NULL, NULL}};
    luaL_setfuncs(L, fns, 0);
}
