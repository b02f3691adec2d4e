/* A box (box.c): a userdata owning C memory across Lua calls that may raise; its __gc releases it,
 * as lauxlib's UBox does for luaL_Buffer. eo_box_new pushes an empty box; eo_box_hold releases what
 * it held, then holds p. */
#ifndef EXACTONLINE_BOX_H
#define EXACTONLINE_BOX_H
#include "eo.h"

typedef void (*eo_release)(void *);
typedef struct eo_box {
    void *p;
    eo_release release;
} eo_box;
EO_HIDDEN eo_box *eo_box_new(lua_State *L);
EO_HIDDEN void *eo_box_hold(eo_box *b, void *p, eo_release release);
EO_HIDDEN void eo_box_release(eo_box *b);
EO_HIDDEN void eo_curl_free(void *p);       /* curl_free */
EO_HIDDEN void eo_curl_free_wiped(void *p); /* wipe a NUL-terminated string, then curl_free */

#endif
