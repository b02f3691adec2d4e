/* OAuth 2.0 with Exact: the authorization URL, the code from whatever the user pasted,
 * token requests and token answers (with hints for the classic failures). */
#include <stdlib.h>
#include <string.h>
#include "box.h"
#include "client.h"
#include "json.h"

/* Add s to b percent-encoded once. libcurl's copy is held by box (made before b) while the buffer
 * grows, and wiped: it may be the client secret or a token. */
static void add_param(lua_State *L, luaL_Buffer *b, eo_box *box, int *first, const char *k, const char *v) {
    char *e = curl_easy_escape(NULL, v, (int)strlen(v)); /* first: v is not read across a Lua call */
    if (!e) luaL_error(L, "exactonline: out of memory");
    eo_box_hold(box, e, eo_curl_free_wiped);
    if (!*first) luaL_addchar(b, '&');
    *first = 0;
    luaL_addstring(b, k);
    luaL_addchar(b, '=');
    luaL_addstring(b, e);
    eo_box_release(box);
}

/* authorization_url{state=…, force_login=bool} -> string */
static int client_authorization_url(lua_State *L) {
    eo_client *c = eo_checkclient(L, 1);
    const char *state = NULL;
    int force = -1, first = 1;
    luaL_Buffer b;
    eo_box *box;
    lua_settop(L, 2);
    if (!lua_isnil(L, 2)) {
        luaL_checktype(L, 2, LUA_TTABLE);
        lua_getfield(L, 2, "state"); /* 3: stays while the URL is built */
        if (!lua_isnil(L, -1)) {
            luaL_argcheck(L, lua_type(L, -1) == LUA_TSTRING, 2, "state must be a string");
            state = lua_tostring(L, -1);
        }
        lua_getfield(L, 2, "force_login");
        if (!lua_isnil(L, -1)) {
            luaL_argcheck(L, lua_isboolean(L, -1), 2, "force_login must be a boolean");
            force = lua_toboolean(L, -1);
        }
    }
    if (!c->redirect_uri) luaL_error(L, "exactonline: config.redirect_uri is required for authorization_url");
    box = eo_box_new(L);
    luaL_buffinit(L, &b);
    luaL_addstring(&b, c->base_url);
    luaL_addstring(&b, "/api/oauth2/auth?");
    add_param(L, &b, box, &first, "client_id", c->client_id);
    add_param(L, &b, box, &first, "redirect_uri", c->redirect_uri);
    add_param(L, &b, box, &first, "response_type", "code");
    if (state) add_param(L, &b, box, &first, "state", state);
    if (force >= 0) add_param(L, &b, box, &first, "force_login", force ? "1" : "0");
    luaL_pushresult(&b);
    return 1;
}

/* Push one query value decoded exactly once; '+' is a space in form encoding. */
static void push_unescaped(lua_State *L, const char *s, size_t len, int plus_is_space) {
    char *tmp = malloc(len + 1), *out;
    int outlen = 0;
    size_t i;
    eo_box *box;
    if (!tmp) luaL_error(L, "exactonline: out of memory");
    for (i = 0; i < len; i++) tmp[i] = (plus_is_space && s[i] == '+') ? ' ' : s[i];
    tmp[len] = '\0';
    out = curl_easy_unescape(NULL, tmp, (int)len, &outlen);
    eo_wipe(tmp, len);
    free(tmp); /* before any Lua call */
    if (!out) luaL_error(L, "exactonline: out of memory");
    box = eo_box_new(L);
    eo_box_hold(box, out, eo_curl_free_wiped); /* a code: wiped when freed */
    lua_pushlstring(L, out, (size_t)outlen);
    eo_box_release(box);
    lua_remove(L, -2);
}

/* Split a query string into the table at t (first value of each name wins). */
static void parse_query(lua_State *L, int t, const char *q) {
    while (*q) {
        const char *amp = strchr(q, '&'), *end = amp ? amp : q + strlen(q), *eq = memchr(q, '=', end - q);
        if (eq && eq > q) {
            push_unescaped(L, q, eq - q, 1);
            lua_pushvalue(L, -1);
            lua_rawget(L, t);
            if (lua_isnil(L, -1)) {
                lua_pop(L, 1);
                /* the code is taken literally; other values are form-encoded ('+' is a space) */
                push_unescaped(L, eq + 1, end - eq - 1, !(eq - q == 4 && memcmp(q, "code", 4) == 0));
                lua_rawset(L, t);
            } else {
                lua_pop(L, 2);
            }
        }
        q = amp ? amp + 1 : end;
    }
}

/* Push t[k] and return it (NULL when absent or empty); it stays on the stack while used. */
static const char *qfield(lua_State *L, int t, const char *k) {
    const char *s;
    lua_getfield(L, t, k);
    s = lua_tostring(L, -1);
    return (s && *s) ? s : NULL;
}

/* code_from(input, expected_state) -> code | nil, err
 * input: a bare code, a %21-encoded code, a query string, or the whole redirect URL. */
static int client_code_from(lua_State *L) {
    size_t len;
    const char *in = luaL_checklstring(L, 2, &len), *expected = luaL_optstring(L, 3, NULL);
    const char *code, *state, *err;
    int t;
    (void)eo_checkclient(L, 1);
    while (len && (*in == ' ' || *in == '\t' || *in == '\n' || *in == '\r')) in++, len--;
    while (len && (in[len - 1] == ' ' || in[len - 1] == '\t' || in[len - 1] == '\n' || in[len - 1] == '\r'))
        len--;
    lua_pushlstring(L, in, len);
    in = lua_tostring(L, -1);
    if (len == 0)
        return eo_fail(L, "oauth", 0, "no_code", "no authorization code given", NULL,
                       "paste the whole URL the browser was sent to after logging in");
    lua_newtable(L);
    t = lua_gettop(L);
    if (strstr(in, "://")) {
        eo_box *box = eo_box_new(L);
        CURLU *u = curl_url();
        char *query = NULL;
        CURLUcode rc;
        if (!u) return luaL_error(L, "exactonline: out of memory");
        rc = curl_url_set(u, CURLUPART_URL, in, 0);
        if (rc == CURLUE_OK) rc = curl_url_get(u, CURLUPART_QUERY, &query, 0);
        curl_url_cleanup(u);
        eo_box_hold(box, query, eo_curl_free_wiped); /* it holds the code */
        if (rc != CURLUE_OK && rc != CURLUE_NO_QUERY)
            return eo_fail(L, "oauth", 0, "bad_redirect_url", curl_url_strerror(rc), NULL,
                           "paste the whole URL from the browser's address bar, or just the code");
        if (query) parse_query(L, t, query);
        eo_box_release(box);
        lua_pop(L, 1);
    } else if (strchr(in, '=')) {
        parse_query(L, t, in[0] == '?' ? in + 1 : in);
    } else {
        /* a bare code: decode once if it still carries %-escapes (…%21…) */
        if (strchr(in, '%')) push_unescaped(L, in, len, 0);
        else lua_pushvalue(L, t - 1);
        if (eo_rawlen(L, -1) == 0)
            return eo_fail(L, "oauth", 0, "no_code", "no authorization code given", NULL, NULL);
        return 1;
    }
    if ((err = qfield(L, t, "error"))) {
        const char *desc = qfield(L, t, "error_description");
        return eo_fail(L, "oauth", 0, err, desc ? desc : "the redirect carries an error instead of a code",
                       NULL,
                       strcmp(err, "access_denied") == 0
                           ? "consent was denied on Exact's page: start again and choose to allow access"
                           : "start the authorization again (exactonline auth)");
    }
    state = qfield(L, t, "state");
    if (expected && (!state || strcmp(state, expected) != 0))
        return eo_fail(L, "oauth", 0, "state_mismatch",
                       state ? "the redirect's state does not match the one this authorization started with"
                             : "the redirect carries no state, but one was expected",
                       NULL,
                       "use the URL from the latest login only; a different state can mean a forged redirect");
    if (!(code = qfield(L, t, "code")))
        return eo_fail(L, "oauth", 0, "no_code", "the URL carries no code= parameter", NULL,
                       "paste the URL the browser was sent to after logging in (it contains ?code=…)");
    lua_pushstring(L, code);
    return 1;
}

/* token_request("authorization_code", code) | token_request("refresh") -> {method,url,headers,body} */
static int client_token_request(lua_State *L) {
    eo_client *c = eo_checkclient(L, 1);
    const char *grant = luaL_checkstring(L, 2);
    int first = 1, refresh = 0;
    luaL_Buffer b;
    eo_box *box;
    lua_settop(L, 3);
    box = eo_box_new(L); /* 4, below the buffer */
    if (strcmp(grant, "authorization_code") == 0) {
        const char *code = luaL_checkstring(L, 3);
        if (!c->redirect_uri)
            return eo_fail(L, "config", 0, NULL, "config.redirect_uri is required to exchange a code", NULL,
                           "give the redirect URI registered for the app in Exact's App Centre");
        luaL_buffinit(L, &b);
        add_param(L, &b, box, &first, "grant_type", "authorization_code");
        add_param(L, &b, box, &first, "code", code);
        add_param(L, &b, box, &first, "redirect_uri", c->redirect_uri);
    } else if (strcmp(grant, "refresh") == 0 || strcmp(grant, "refresh_token") == 0) {
        if (!c->refresh_token)
            return eo_fail(L, "oauth", 0, "no_refresh_token", "there is no refresh token to refresh with", NULL,
                           "authorize first (exactonline auth, or client:exchange)");
        refresh = 1;
        luaL_buffinit(L, &b);
        add_param(L, &b, box, &first, "grant_type", "refresh_token");
        add_param(L, &b, box, &first, "refresh_token", c->refresh_token);
    } else {
        return luaL_argerror(L, 2, "\"authorization_code\" or \"refresh\" expected");
    }
    add_param(L, &b, box, &first, "client_id", c->client_id);
    add_param(L, &b, box, &first, "client_secret", c->client_secret);
    luaL_pushresult(&b);
    c->last_grant_refresh = refresh;
    lua_createtable(L, 0, 4);
    lua_pushliteral(L, "POST");
    lua_setfield(L, -2, "method");
    lua_pushfstring(L, "%s/api/oauth2/token", c->base_url);
    lua_setfield(L, -2, "url");
    lua_createtable(L, 0, 2);
    lua_pushliteral(L, "application/x-www-form-urlencoded");
    lua_setfield(L, -2, "Content-Type");
    lua_pushliteral(L, "application/json");
    lua_setfield(L, -2, "Accept");
    lua_setfield(L, -2, "headers");
    lua_pushvalue(L, -2);
    lua_setfield(L, -2, "body");
    lua_pushnumber(L, c->timeout);
    lua_setfield(L, -2, "timeout");
    return 1;
}

static const char *hint_for(eo_client *c, const char *code, const char *msg, const char *reason) {
    const char *m = msg ? msg : "";
    if (strstr(m, "Old refresh token") || (reason && strstr(reason, "Old refresh token")))
        return "this refresh-token chain is dead (it was used already, maybe by another process): "
               "a person must authorize again (run `exactonline auth`)";
    if (strstr(m, "not expired") || (reason && strstr(reason, "TooEarlyToRefreshTokens")))
        return "Exact refuses a refresh sooner than 570 s after the last token request: "
               "keep using the current access token and refresh in its last 30 seconds";
    if (strstr(m, "refresh token expired"))
        return "refresh tokens live 30 days: a person must authorize again (run `exactonline auth`)";
    if (strstr(m, "edirect") || strstr(m, "redirect_uri"))
        return "the redirect_uri must match the one registered in Exact's App Centre exactly "
               "(https, host, path and trailing slash)";
    if (strstr(m, "Signed data extraction"))
        return "the code was mangled (decoded twice or cut short): paste the whole redirect URL instead";
    if (code && strcmp(code, "invalid_grant") == 0)
        return c->last_grant_refresh
                   ? "the refresh token was refused: a person must authorize again (run `exactonline auth`)"
                   : "the code expired or was used already: codes live 3 minutes and work once, "
                     "so get a new one (run `exactonline auth` again)";
    if (code && strcmp(code, "invalid_client") == 0)
        return "check client_id and client_secret; a recreated app has new ones, and the app must live in "
               "this region (wrong region host: check region/base_url)";
    if (code && strcmp(code, "invalid_request") == 0)
        return "check client_id, client_secret and redirect_uri against the App Centre";
    if (code && strcmp(code, "unauthorized_client") == 0)
        return "a person must authorize again (run `exactonline auth`)";
    return NULL;
}

/* absorb_token(resp, now) -> tokens | nil, err [, tokens to save]
 * A refresh answer without refresh_token keeps the old one; any answer that carries a
 * refresh_token updates ours, even an error (the third return tells the caller to save it). */
static int client_absorb_token(lua_State *L) {
    eo_client *c = eo_checkclient(L, 1);
    double now = eo_checktime(L, 3), expires_in = EO_ACCESS_LIFETIME;
    const char *at = NULL, *rt = NULL, *code = NULL, *msg = NULL, *reason;
    long status;
    int data;
    luaL_checktype(L, 2, LUA_TTABLE);
    lua_getfield(L, 2, "status");
    status = (long)eo_optwhole(L, -1, 100, 999, 0);
    lua_getfield(L, 2, "headers");
    reason = lua_istable(L, -1) ? eo_header(L, lua_gettop(L), "reason") : NULL; /* stays pushed */
    lua_getfield(L, 2, "body");
    if (!lua_isstring(L, -1) || !eo_json_decode(L, lua_gettop(L)) || !lua_istable(L, -1)) {
        if (status >= 500 || status == 0)
            return eo_fail(L, "http", status, NULL, "the token endpoint did not answer with JSON", reason,
                           "Exact Online may be down or the base URL is wrong; try again later");
        return eo_fail(L, "decode", status, NULL, "the token endpoint's answer is not JSON", reason,
                       "check the region/base_url: it must be Exact Online's own host");
    }
    data = lua_gettop(L);
    if (eo_getfield(L, data, "access_token") == LUA_TSTRING) at = lua_tostring(L, -1);
    if (eo_getfield(L, data, "refresh_token") == LUA_TSTRING) rt = lua_tostring(L, -1);
    if (eo_getfield(L, data, "error") == LUA_TSTRING) code = lua_tostring(L, -1);
    if (eo_getfield(L, data, "error_description") == LUA_TSTRING) msg = lua_tostring(L, -1);
    lua_getfield(L, data, "expires_in");
    /* "600" or 600; anything odd (0, negative, NaN, inf, 1e308, days) keeps the documented 600 s */
    if (lua_isnumber(L, -1) && lua_tonumber(L, -1) > 0 && lua_tonumber(L, -1) <= EO_REFRESH_LIFETIME)
        expires_in = lua_tonumber(L, -1);

    if (status == 200 && at && *at && !code) {
        eo_set_access_token(L, c, at);
        if (rt && *rt) {
            eo_setsecret(L, &c->refresh_token, rt);
            c->refresh_obtained_at = now;
        }
        c->obtained_at = now;
        c->expires_at = now + expires_in;
        eo_push_tokens(L, c);
        return 1;
    }
    if (rt && *rt) {
        eo_setsecret(L, &c->refresh_token, rt);
        c->refresh_obtained_at = now;
    }
    /* Exact's clock says "not yet": no proactive refresh of this access token again, the 401 decides */
    if (c->last_grant_refresh && status >= 400 && status < 500 && code && strcmp(code, "access_denied") == 0)
        c->early_refused = 1;
    if (!code && status == 200) code = "no_access_token";
    if (!msg && status == 200) msg = "the token answer carries no access_token";
    eo_push_error(L, status >= 500 ? "http" : "oauth", status, code, msg, reason, hint_for(c, code, msg, reason));
    lua_pushnil(L);
    lua_insert(L, -2);
    if (rt && *rt) {
        eo_push_tokens(L, c);
        return 3;
    }
    return 2;
}

const luaL_Reg eo_oauth_methods[] = {
    {"authorization_url", client_authorization_url},
    {"code_from", client_code_from},
    {"token_request", client_token_request},
    {"absorb_token", client_absorb_token},
    {NULL, NULL}};
