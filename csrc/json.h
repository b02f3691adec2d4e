/* lua-cjson through the Lua API (json.c): a private instance (cjson.new), its C functions kept in the
 * registry, so the user's cjson settings stay theirs and nothing is looked up in a table a user could
 * change. Both are C functions: calling them never yields. */
#ifndef EXACTONLINE_JSON_H
#define EXACTONLINE_JSON_H
#include "eo.h"

/* Decode the string at idx: 1 with the value pushed, or 0 with the message pushed. */
EO_HIDDEN int eo_json_decode(lua_State *L, int idx);
/* Encode the value at idx: 1 with the string pushed, or 0 with the message pushed. */
EO_HIDDEN int eo_json_encode(lua_State *L, int idx);

#endif
