#include "CBuildInfo.h"

#ifndef DISPATCH_GIT_SHA
#define DISPATCH_GIT_SHA "unknown"
#endif

const char *dispatch_git_sha(void) { return DISPATCH_GIT_SHA; }
