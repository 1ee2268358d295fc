#ifndef CGIT2_SHIM_H
#define CGIT2_SHIM_H
#include <git2.h>
#include <git2/sys/odb_backend.h>
#include <git2/sys/repository.h>

/* git_libgit2_opts is variadic and cannot be called from Swift. */

/* Skip re-hashing every object on read (git itself does not verify on read either). */
static inline int cgit2_set_strict_hash_verification(int enabled) {
    return git_libgit2_opts(GIT_OPT_ENABLE_STRICT_HASH_VERIFICATION, enabled);
}

/* Skip creating-time validation of every object reference we write. */
static inline int cgit2_set_strict_object_creation(int enabled) {
    return git_libgit2_opts(GIT_OPT_ENABLE_STRICT_OBJECT_CREATION, enabled);
}
/* A cancellation flag a checkout polls: an object-database backend of the highest priority that answers every
   read with "look elsewhere" until the flag is set, and with an error after. A checkout reads each blob before
   writing it, so setting the flag stops the writing within one file. */
#include <stdlib.h>

typedef struct {
    git_odb_backend parent;
    int *cancelled;
} cgit2_cancel_backend;

static int cgit2_cancel_read(void **data, size_t *len, git_object_t *type, git_odb_backend *backend, const git_oid *oid) {
    (void)data; (void)len; (void)type; (void)oid;
    const cgit2_cancel_backend *self = (const cgit2_cancel_backend *)backend;
    if (__atomic_load_n(self->cancelled, __ATOMIC_ACQUIRE)) {
        git_error_set_str(GIT_ERROR_CALLBACK, "checkout cancelled");
        return GIT_EUSER;
    }
    return GIT_PASSTHROUGH;
}

static void cgit2_cancel_free(git_odb_backend *backend) { free(backend); }

static inline int cgit2_add_cancel_backend(git_odb *odb, int *cancelled) {
    cgit2_cancel_backend *backend = calloc(1, sizeof *backend);
    if (backend == NULL) return -1;
    backend->parent.version = GIT_ODB_BACKEND_VERSION;
    backend->parent.read = cgit2_cancel_read;
    backend->parent.free = cgit2_cancel_free;
    backend->cancelled = cancelled;
    int rc = git_odb_add_backend(odb, &backend->parent, 1000);
    if (rc != 0) free(backend);
    return rc;
}

static inline int *cgit2_flag_new(void) { return calloc(1, sizeof(int)); }
static inline void cgit2_flag_set(int *flag) { __atomic_store_n(flag, 1, __ATOMIC_RELEASE); }
static inline int cgit2_flag_get(int *flag) { return __atomic_load_n(flag, __ATOMIC_ACQUIRE); }
static inline void cgit2_flag_free(int *flag) { free(flag); }
#endif
