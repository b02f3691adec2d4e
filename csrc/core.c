/* exactonline.core: the C part of require "exactonline". */
#include <curl/curl.h>
#include <pthread.h>
#include "client.h"

#include <stdlib.h>
#include <string.h>

/* Written once, under pthread_once, before any Lua state can read them. */
static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_result = CURLE_OK;
static int keylog_at_init = 0;

static int env_set(const char *name) {
    const char *v = getenv(name);
    return v && *v;
}

/* curl_global_init is not thread-safe: once per process, whatever number of Lua states load us.
 * libcurl opens $SSLKEYLOGFILE here (OpenSSL's keylog): remember whether it did. */
static void init_curl(void) {
    keylog_at_init = env_set("SSLKEYLOGFILE");
    curl_init_result = curl_global_init(CURL_GLOBAL_DEFAULT);
}

int eo_keylog_refused(void) {
    const char *allow = getenv("EXACTONLINE_ALLOW_KEYLOG");
    if (allow && strcmp(allow, "1") == 0) return 0;
    return keylog_at_init || env_set("SSLKEYLOGFILE");
}

EO_EXPORT int luaopen_exactonline_core(lua_State *L) {
    pthread_once(&curl_once, init_curl);
    if (curl_init_result != CURLE_OK)
        return luaL_error(L, "exactonline: libcurl failed to initialise: %s",
                          curl_easy_strerror(curl_init_result));
    lua_newtable(L);
    lua_pushliteral(L, EO_VERSION);
    lua_setfield(L, -2, "version");
    lua_pushstring(L, curl_version());
    lua_setfield(L, -2, "curl_version");
    eo_open_error(L);
    eo_open_box(L);
    eo_open_json(L);
    eo_open_http(L);
    eo_open_client(L);
    eo_open_webhook(L);
    eo_open_digest(L);
    eo_open_fileio(L);
    eo_open_sys(L);
    /* Exact's token clock, from its one home (client.h), for reports such as `exactonline token` */
    lua_createtable(L, 0, 4);
    lua_pushinteger(L, (lua_Integer)EO_ACCESS_LIFETIME);
    lua_setfield(L, -2, "access_lifetime");
    lua_pushinteger(L, (lua_Integer)EO_REFRESH_LIFETIME);
    lua_setfield(L, -2, "refresh_lifetime");
    lua_pushinteger(L, (lua_Integer)EO_REFRESH_MIN_AGE);
    lua_setfield(L, -2, "refresh_min_age");
    lua_pushinteger(L, (lua_Integer)EO_REFRESH_WINDOW);
    lua_setfield(L, -2, "refresh_window");
    lua_setfield(L, -2, "token_rules");
    eo_open_multi(L);
    return 1;
}
