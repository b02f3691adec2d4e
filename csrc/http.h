/* A client's libcurl transfer (http.c): its easy handle set up for a request, the answer read back,
 * the handle freed. perform (http.c) and exactonline.Multi (multi.c) both drive transfers this way. */
#ifndef EXACTONLINE_HTTP_H
#define EXACTONLINE_HTTP_H
#include "client.h"

/* Set up c's easy handle for the request table at idx (copy_body: libcurl copies the body);
 * 1, or 0 with nil, err pushed. */
EO_HIDDEN int eo_http_prepare(lua_State *L, eo_client *c, int idx, int copy_body);
/* When the transfer ended with rc: push the answer {status, headers, body}, or nil, err. */
EO_HIDDEN int eo_http_finish(lua_State *L, eo_client *c, CURLcode rc);
/* Free what the libcurl side holds (on close). */
EO_HIDDEN void eo_http_free(eo_client *c);
/* multi.c: take c's running transfer out of its multi handle (c is being closed). */
EO_HIDDEN void eo_multi_detach(eo_client *c);

#endif
