#ifndef CGIT2_SHIM_H
#define CGIT2_SHIM_H
#include <git2.h>
#include <git2/sys/odb_backend.h>
#endif
