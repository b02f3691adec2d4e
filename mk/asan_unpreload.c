/* Loaded after the ASan runtime in LD_PRELOAD for the busted process only (make asan): takes
 * LD_PRELOAD out of the environment at start-up, so the children the specs spawn (nginx, curl,
 * sh, the CLI under lua5.4) run as they normally do instead of under the ASan runtime. */
#include <stdlib.h>

__attribute__((constructor)) static void unpreload(void) { unsetenv("LD_PRELOAD"); }
