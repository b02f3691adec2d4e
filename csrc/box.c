/* C memory that must outlive a Lua call which may raise (an allocation, a metamethod) is held by
 * a box: a userdata on the stack whose __gc releases it, as lauxlib's UBox does for luaL_Buffer.
 * Nothing is lost when the call raises, and the happy path releases at once. */
#include <string.h>
#include <curl/curl.h>
#include "box.h"

#define BOX_MT "exactonline.Box"

static int box_gc(lua_State *L) {
    eo_box_release((eo_box *)luaL_checkudata(L, 1, BOX_MT));
    return 0;
}

eo_box *eo_box_new(lua_State *L) {
    eo_box *b = (eo_box *)lua_newuserdata(L, sizeof *b);
    b->p = NULL;
    b->release = NULL;
    luaL_getmetatable(L, BOX_MT);
    lua_setmetatable(L, -2);
    return b;
}

void *eo_box_hold(eo_box *b, void *p, eo_release release) {
    eo_box_release(b);
    b->p = p;
    b->release = release;
    return p;
}

void eo_box_release(eo_box *b) {
    void *p = b->p;
    b->p = NULL;
    if (p && b->release) b->release(p);
}

void eo_curl_free(void *p) {
    curl_free(p);
}

void eo_curl_free_wiped(void *p) {
    eo_wipe(p, strlen((const char *)p));
    curl_free(p);
}

void eo_open_box(lua_State *L) {
    if (luaL_newmetatable(L, BOX_MT)) {
        lua_pushcfunction(L, box_gc);
        lua_setfield(L, -2, "__gc");
        lua_pushliteral(L, "exactonline.Box is private");
        lua_setfield(L, -2, "__metatable");
    }
    lua_pop(L, 1);
}
