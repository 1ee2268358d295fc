#ifndef CPROCESSSPAWN_H
#define CPROCESSSPAWN_H

#include <sys/types.h>

/// Spawns `path` in a new session (so it leads its own process group) with stdin/stdout/stderr
/// on the given descriptors, in `cwd`, with every other descriptor closed and every signal
/// disposition and the signal mask reset. Returns 0 or an errno value; never forks a shell.
int cps_spawn(pid_t *pid, const char *path, char *const argv[], char *const envp[], const char *cwd,
              int stdin_fd, int stdout_fd, int stderr_fd);

#endif
