#define _GNU_SOURCE
#include "CProcessSpawn.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <stdbool.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/inotify.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

/* Every child is forked by one spawner thread that lives as long as the process:
   - PR_SET_PDEATHSIG is tied to the thread that forked the child, so only a thread that never exits makes
     "the agent dies with its runner" mean the runner process (kill -9 of `dispatch run` takes its agent down);
   - the child sets the operator's umask for itself between fork and exec, while the runner keeps 077.
   vfork() rather than posix_spawn: the death signal and the umask must be set in the child before exec, which
   posix_spawn cannot do; vfork rather than fork: no copy of the runner's page tables (fork made serve a third
   slower). The child shares the spawner thread's memory until it execs, so it only makes syscalls (no allocation,
   no locks, no return from fork_exec) and ends in execve or _exit, as posix_spawn's own child does. */

struct spawn_call {
    pid_t *pid;
    const char *path;
    char *const *argv;
    char *const *envp;
    const char *cwd;
    int stdin_fd, stdout_fd, stderr_fd;
    int child_umask;
    int death_signal;
    const char *cgroup_tasks[2];
    long long rlimit_data;
    int rc;
    bool done;
};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t wake = PTHREAD_COND_INITIALIZER;
static pthread_cond_t finished = PTHREAD_COND_INITIALIZER;
static struct spawn_call *pending = NULL;
static pthread_once_t started = PTHREAD_ONCE_INIT;
static int start_error = 0;

/* Joins a v1 cgroup by writing "0" (this task) to its `tasks` file. Moving one thread, the caller itself, is the
 * one move the kernel makes without write-locking cgroup_threadgroup_rwsem, whose every write lock waits for an RCU
 * grace period (10-20 ms here, measured, per spawn with cgroup.procs); the child is single-threaded after vfork, so
 * the thread is the whole process. Plain system calls only. */
static int join_cgroup(const char *tasks) {
    int fd = open(tasks, O_WRONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    ssize_t n = write(fd, "0", 1);
    close(fd);
    return n == 1 ? 0 : -1;
}

static void child(const struct spawn_call *call, pid_t parent, int report) {
    if (call->death_signal > 0) {
        prctl(PR_SET_PDEATHSIG, call->death_signal);
        if (getppid() != parent) _exit(127); /* the runner died before the death signal was armed */
    }
    /* Into the run's cgroups before anything else: whatever it starts is counted and can be found. */
    for (int i = 0; i < 2; i++) {
        if (call->cgroup_tasks[i] != NULL && join_cgroup(call->cgroup_tasks[i]) != 0) goto fail;
    }
    if (call->rlimit_data > 0) {
        struct rlimit limit = {(rlim_t)call->rlimit_data, (rlim_t)call->rlimit_data};
        if (setrlimit(RLIMIT_DATA, &limit) != 0) goto fail;
    }
    setsid();
    struct sigaction dfl = {0};
    dfl.sa_handler = SIG_DFL;
    for (int sig = 1; sig < 65; sig++) {
        if (sig != SIGKILL && sig != SIGSTOP) sigaction(sig, &dfl, NULL);
    }
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    if (call->child_umask >= 0) umask((mode_t)call->child_umask);
    int fds[3] = {call->stdin_fd, call->stdout_fd, call->stderr_fd};
    /* Move the sources above 2 first so a dup2 cannot clobber a source still needed. */
    for (int i = 0; i < 3; i++) {
        if (fds[i] < 3) fds[i] = fcntl(fds[i], F_DUPFD, 3);
    }
    for (int i = 0; i < 3; i++) {
        if (dup2(fds[i], i) < 0) goto fail;
    }
    if (call->cwd != NULL && chdir(call->cwd) != 0) goto fail;
    /* Everything above 2 closes at exec (the error pipe included, which is how success is seen). */
    if (syscall(SYS_close_range, 3U, ~0U, 4U /* CLOSE_RANGE_CLOEXEC */) != 0) {
        for (int fd = 3; fd < 65536; fd++) fcntl(fd, F_SETFD, FD_CLOEXEC);
    }
    execve(call->path, call->argv, call->envp);
fail:;
    int error = errno;
    while (write(report, &error, sizeof error) < 0 && errno == EINTR) {}
    _exit(127);
}

static int fork_exec(struct spawn_call *call) {
    int pipefd[2];
    if (pipe2(pipefd, O_CLOEXEC) != 0) return errno;
    pid_t parent = getpid();
    pid_t pid = vfork();
    if (pid < 0) {
        int error = errno;
        close(pipefd[0]);
        close(pipefd[1]);
        return error;
    }
    if (pid == 0) child(call, parent, pipefd[1]);
    close(pipefd[1]);
    int error = 0;
    ssize_t n;
    do {
        n = read(pipefd[0], &error, sizeof error);
    } while (n < 0 && errno == EINTR);
    close(pipefd[0]);
    if (n == sizeof error) {
        while (waitpid(pid, NULL, 0) < 0 && errno == EINTR) {}
        return error;
    }
    *call->pid = pid;
    return 0;
}

static void *spawner(void *unused) {
    (void)unused;
    for (;;) {
        pthread_mutex_lock(&lock);
        while (pending == NULL) pthread_cond_wait(&wake, &lock);
        struct spawn_call *call = pending;
        pending = NULL;
        pthread_mutex_unlock(&lock);
        call->rc = fork_exec(call);
        pthread_mutex_lock(&lock);
        call->done = true;
        pthread_cond_broadcast(&finished);
        pthread_mutex_unlock(&lock);
    }
    return NULL;
}

static void start_spawner(void) {
    pthread_t thread;
    pthread_attr_t attributes;
    pthread_attr_init(&attributes);
    pthread_attr_setdetachstate(&attributes, PTHREAD_CREATE_DETACHED);
    start_error = pthread_create(&thread, &attributes, spawner, NULL);
    pthread_attr_destroy(&attributes);
}

int cps_spawn(pid_t *pid, const char *path, char *const argv[], char *const envp[], const char *cwd,
              int stdin_fd, int stdout_fd, int stderr_fd, int child_umask, int death_signal,
              const char *cgroup_tasks_a, const char *cgroup_tasks_b, long long rlimit_data) {
    pthread_once(&started, start_spawner);
    if (start_error != 0) return start_error;
    struct spawn_call call = {pid, path, argv, envp, cwd, stdin_fd, stdout_fd, stderr_fd, child_umask, death_signal,
                              {cgroup_tasks_a, cgroup_tasks_b}, rlimit_data, 0, false};
    pthread_mutex_lock(&lock);
    while (pending != NULL) pthread_cond_wait(&finished, &lock);
    pending = &call;
    pthread_cond_signal(&wake);
    while (!call.done) pthread_cond_wait(&finished, &lock);
    pthread_mutex_unlock(&lock);
    return call.rc;
}

int cps_set_umask(int mask) { return (int)umask((mode_t)mask); }

/* Field 22 of /proc/PID/stat; 0 when the process is gone or a zombie; ULLONG_MAX when /proc could not be read
   (out of descriptors): that says nothing about the process. */
static unsigned long long live_start_time(pid_t pid) {
    char path[64], buffer[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return errno == ENOENT || errno == ESRCH ? 0 : ULLONG_MAX;
    ssize_t n = read(fd, buffer, sizeof buffer - 1);
    int error = errno;
    close(fd);
    if (n < 0) return error == ESRCH ? 0 : ULLONG_MAX;
    if (n == 0) return 0;
    buffer[n] = 0;
    char *p = strrchr(buffer, ')');
    if (p == NULL || p[1] == 0) return 0;
    p += 2;
    if (*p == 'Z' || *p == 'X') return 0;
    for (int field = 3; field < 22 && p != NULL; field++) {
        p = strchr(p, ' ');
        if (p != NULL) p++;
    }
    return p == NULL ? 0 : strtoull(p, NULL, 10);
}

void cps_wait_foreign_exit(pid_t pid, unsigned long long start_time) {
    int fd = (int)syscall(SYS_pidfd_open, pid, 0);
    /* Checked after the pidfd is open: from here on the pid cannot be reused under it. */
    unsigned long long now = live_start_time(pid);
    if (start_time == 0 ? now == 0 : (now != start_time && now != ULLONG_MAX)) {
        if (fd >= 0) close(fd);
        return;
    }
    if (fd >= 0) {
        struct pollfd watch = {fd, POLLIN, 0};
        while (poll(&watch, 1, -1) < 0 && errno == EINTR) {}
        close(fd);
        return;
    }
    for (;;) {
        now = live_start_time(pid);
        /* Without a start time to compare, only the end of whatever process has the pid counts. */
        if (start_time == 0 ? now == 0 : (now != start_time && now != ULLONG_MAX)) return;
        usleep(50 * 1000);
    }
}

int cps_pidfd_open(pid_t pid, unsigned long long start_time) {
    int fd = (int)syscall(SYS_pidfd_open, pid, 0);
    if (fd < 0) return errno == ESRCH ? -1 : -2;
    if (start_time == 0) return fd;
    /* Checked after the pidfd is open: from here on the pid cannot be reused under it. */
    unsigned long long now = live_start_time(pid);
    if (now != start_time && now != ULLONG_MAX) {
        close(fd);
        return -1;
    }
    return fd;
}

int cps_loop_add(int epfd, int fd, unsigned long long tag) {
    struct epoll_event event = {0};
    event.events = EPOLLIN;
    event.data.u64 = tag;
    return epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &event) == 0 ? 0 : errno;
}

int cps_loop_remove(int epfd, int fd) { return epoll_ctl(epfd, EPOLL_CTL_DEL, fd, NULL) == 0 ? 0 : errno; }

int cps_loop_wait(int epfd, unsigned long long *tags, int capacity, int timeout_ms) {
    struct epoll_event events[64];
    if (capacity > 64) capacity = 64;
    int n = epoll_wait(epfd, events, capacity, timeout_ms);
    if (n < 0) return errno == EINTR ? 0 : -errno;
    for (int i = 0; i < n; i++) tags[i] = events[i].data.u64;
    return n;
}

int cps_inotify_read(int fd, int *watches, int capacity) {
    /* Aligned as struct inotify_event requires; big enough for many events at once (names are short here). */
    char buffer[16384] __attribute__((aligned(__alignof__(struct inotify_event))));
    int count = 0;
    for (;;) {
        ssize_t n = read(fd, buffer, sizeof buffer);
        if (n < 0) {
            if (errno == EINTR) continue;
            return count; /* EAGAIN: drained */
        }
        if (n == 0) return count;
        for (char *p = buffer; p < buffer + n;) {
            const struct inotify_event *event = (const struct inotify_event *)p;
            /* IN_Q_OVERFLOW: events were lost, every watch is told (watch -1). */
            int watch = (event->mask & IN_Q_OVERFLOW) ? -1 : event->wd;
            bool seen = false;
            for (int i = 0; i < count && !seen; i++) seen = watches[i] == watch;
            if (!seen) {
                if (count == capacity) return -count; /* full: the caller tells every watch */
                watches[count++] = watch;
            }
            p += sizeof(struct inotify_event) + event->len;
        }
    }
}

int cps_loop_create(void) { return epoll_create1(EPOLL_CLOEXEC); }

int cps_wake_create(void) { return eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC); }
