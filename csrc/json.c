/* lua-cjson for every JSON encode and decode in C: a private instance (cjson.new), so the user's
 * cjson settings stay theirs. Its decode and encode (C functions) are kept in the registry at
 * luaopen time, under the addresses of two constants: nothing is looked up through a table a user
 * could change, and nothing called here can yield. */
#include "json.h"

static const char decode_key = 'd', encode_key = 'e';

static int json_call(lua_State *L, int idx, const void *key) {
    idx = eo_absindex(L, idx);
    lua_pushlightuserdata(L, (void *)key);
    lua_rawget(L, LUA_REGISTRYINDEX);
    lua_pushvalue(L, idx);
    return lua_pcall(L, 1, 1, 0) == LUA_OK;
}

int eo_json_decode(lua_State *L, int idx) {
    return json_call(L, idx, &decode_key);
}

int eo_json_encode(lua_State *L, int idx) {
    return json_call(L, idx, &encode_key);
}

void eo_open_json(lua_State *L) {
    lua_getglobal(L, "require");
    lua_pushliteral(L, "cjson");
    lua_call(L, 1, 1);
    lua_getfield(L, -1, "new");
    lua_call(L, 0, 1);
    lua_pushlightuserdata(L, (void *)&decode_key);
    lua_getfield(L, -2, "decode");
    luaL_argcheck(L, lua_iscfunction(L, -1), 1, "cjson.new().decode is not lua-cjson's");
    lua_rawset(L, LUA_REGISTRYINDEX);
    lua_pushlightuserdata(L, (void *)&encode_key);
    lua_getfield(L, -2, "encode");
    luaL_argcheck(L, lua_iscfunction(L, -1), 1, "cjson.new().encode is not lua-cjson's");
    lua_rawset(L, LUA_REGISTRYINDEX);
    lua_pop(L, 2);
}
