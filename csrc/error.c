/* Error objects: plain tables {kind, status, code, message, reason, hint} with a
 * metatable whose __tostring reads well in a terminal. Never put a secret in one. */
#include <math.h>
#include <string.h>
#include <openssl/crypto.h>
#include "eo.h"

static const char *what_failed(const char *kind) {
    static const struct { const char *kind, *what; } names[] = {
        {"config", "configuration"},        {"network", "network request"},
        {"tls", "TLS connection"},          {"http", "HTTP request"},
        {"oauth", "authorization"},         {"api", "Exact Online API request"},
        {"rate_limit", "rate limit"},       {"decode", "reading Exact Online's answer"},
        {"store", "token store"},           {"database", "replica database"},
        {NULL, NULL}};
    int i;
    for (i = 0; names[i].kind; i++)
        if (strcmp(names[i].kind, kind) == 0) return names[i].what;
    return kind;
}

static void set_str(lua_State *L, const char *k, const char *v) {
    if (v && *v) {
        lua_pushstring(L, v);
        lua_setfield(L, -2, k);
    }
}

void eo_push_error(lua_State *L, const char *kind, long status, const char *code,
                   const char *message, const char *reason, const char *hint) {
    lua_createtable(L, 0, 6);
    set_str(L, "kind", kind ? kind : "api");
    if (status > 0) {
        lua_pushinteger(L, (lua_Integer)status);
        lua_setfield(L, -2, "status");
    }
    set_str(L, "code", code);
    set_str(L, "message", message);
    set_str(L, "reason", reason);
    set_str(L, "hint", hint);
    luaL_getmetatable(L, EO_ERROR_MT);
    lua_setmetatable(L, -2);
}

int eo_fail(lua_State *L, const char *kind, long status, const char *code, const char *message,
            const char *reason, const char *hint) {
    lua_pushnil(L);
    eo_push_error(L, kind, status, code, message, reason, hint);
    return 2;
}

void eo_wipe(void *p, size_t n) {
    if (p && n) OPENSSL_cleanse(p, n);
}

double eo_checktime(lua_State *L, int idx) {
    double v = luaL_checknumber(L, idx);
    if (!eo_within(v, 0, EO_MAX_EPOCH))
        luaL_error(L, "exactonline: the clock read %f: config.clock (or the transport's now) must return epoch "
                      "seconds", v);
    return v;
}

lua_Integer eo_optwhole(lua_State *L, int idx, double lo, double hi, lua_Integer dflt) {
    double v;
    if (!lua_isnumber(L, idx)) return dflt; /* a number, or a string holding one */
    v = lua_tonumber(L, idx);
    if (!eo_within(v, lo, hi) || v != floor(v)) return dflt;
    return (lua_Integer)v;
}

/* Push t[k] and return it as a string (numbers are converted in that stack slot), or NULL when it is
 * absent or empty. The value stays on the stack: the pointer is only good while it is there. */
static const char *field(lua_State *L, int t, const char *k) {
    const char *s;
    lua_getfield(L, t, k);
    s = lua_isstring(L, -1) ? lua_tostring(L, -1) : NULL;
    return (s && *s) ? s : NULL;
}

/* "exactonline: authorization failed (HTTP 400 invalid_grant): <Exact's words>
 *    Reason: …
 *    What to do: …" */
static int error_tostring(lua_State *L) {
    luaL_Buffer b;
    const char *kind, *code, *message, *reason, *hint;
    lua_Integer status = 0;
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_settop(L, 1);
    kind = field(L, 1, "kind"); /* stack 2..6 hold the five strings until the result is built */
    code = field(L, 1, "code");
    message = field(L, 1, "message");
    reason = field(L, 1, "reason");
    hint = field(L, 1, "hint");
    lua_getfield(L, 1, "status");
    status = eo_optwhole(L, -1, 0, 999, 0);
    lua_pop(L, 1);

    luaL_buffinit(L, &b);
    luaL_addstring(&b, "exactonline: ");
    luaL_addstring(&b, what_failed(kind ? kind : "api"));
    luaL_addstring(&b, " failed");
    if (status > 0 || code) {
        luaL_addstring(&b, " (");
        if (status > 0) {
            lua_pushfstring(L, "HTTP %d", (int)status);
            luaL_addvalue(&b);
            if (code) luaL_addchar(&b, ' ');
        }
        if (code) luaL_addstring(&b, code);
        luaL_addchar(&b, ')');
    }
    if (message) {
        luaL_addstring(&b, ": ");
        luaL_addstring(&b, message);
    }
    if (reason && (!message || !strstr(reason, message))) {
        luaL_addstring(&b, "\n  Reason: ");
        luaL_addstring(&b, reason);
    }
    if (hint) {
        luaL_addstring(&b, "\n  What to do: ");
        luaL_addstring(&b, hint);
    }
    luaL_pushresult(&b);
    return 1;
}

/* core.error{kind=…, status=…, code=…, message=…, reason=…, hint=…} for errors made in Lua. */
static int l_error(lua_State *L) {
    lua_Integer status = 0;
    const char *kind, *code, *message, *reason, *hint;
    int err;
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_settop(L, 1);
    lua_getfield(L, 1, "status");
    status = eo_optwhole(L, -1, 0, 999, 0);
    lua_pop(L, 1);
    kind = field(L, 1, "kind"); /* stack 2..6, kept until the error is made */
    code = field(L, 1, "code");
    message = field(L, 1, "message");
    reason = field(L, 1, "reason");
    hint = field(L, 1, "hint");
    eo_push_error(L, kind, (long)status, code, message, reason, hint);
    err = lua_gettop(L);
    /* keep any extra fields the caller set (retry_after, allowed_at, …) */
    lua_pushnil(L);
    while (lua_next(L, 1)) {
        lua_pushvalue(L, -2);
        lua_insert(L, -2);
        lua_rawset(L, err);
    }
    return 1;
}

static int l_is_error(lua_State *L) {
    int is = 0;
    if (lua_type(L, 1) == LUA_TTABLE && lua_getmetatable(L, 1)) {
        luaL_getmetatable(L, EO_ERROR_MT);
        is = lua_rawequal(L, -1, -2);
        lua_pop(L, 2);
    }
    lua_pushboolean(L, is);
    return 1;
}

void eo_open_error(lua_State *L) {
    static const luaL_Reg fns[] = {{"error", l_error}, {"is_error", l_is_error}, {NULL, NULL}};
    if (luaL_newmetatable(L, EO_ERROR_MT)) {
        lua_pushcfunction(L, error_tostring);
        lua_setfield(L, -2, "__tostring");
        lua_pushliteral(L, "exactonline.Error");
        lua_setfield(L, -2, "__name");
    }
    lua_setfield(L, -2, "Error"); /* core.Error: the metatable, for Lua-side checks */
    luaL_setfuncs(L, fns, 0);
}
