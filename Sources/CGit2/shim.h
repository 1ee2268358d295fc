#ifndef CGIT2_SHIM_H
#define CGIT2_SHIM_H
#include <git2.h>
#include <git2/sys/odb_backend.h>

/* git_libgit2_opts is variadic and cannot be called from Swift. */

/* Skip re-hashing every object on read (git itself does not verify on read either). */
static inline int cgit2_set_strict_hash_verification(int enabled) {
    return git_libgit2_opts(GIT_OPT_ENABLE_STRICT_HASH_VERIFICATION, enabled);
}

/* Skip creating-time validation of every object reference we write. */
static inline int cgit2_set_strict_object_creation(int enabled) {
    return git_libgit2_opts(GIT_OPT_ENABLE_STRICT_OBJECT_CREATION, enabled);
}
#endif
