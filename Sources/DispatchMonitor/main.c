/* dispatch-monitor: the small per-run process that holds one agent attempt (CONTRACT §7).

   dispatch-monitor --record PREFIX --allowed-ms A --slack-ms S --grace-ms G --lease-ms L --runner-pid P -- PROGRAM [ARG...]

   `serve` starts it (in a session of its own, stdin/stdout/stderr already the attempt's files, the agent's
   environment) instead of starting bwrap itself. The monitor:
   - writes PREFIX.monitor ({"pid","startTime","bootId","startedAtMs","startedAtBootMs","allowedMs"}) before the
     agent starts, so a new `serve` can find it by pid, start time and boot; it does not start the agent when
     PREFIX.abandoned exists (the run was ended as lost meanwhile), and ends it when that appears while orphaned;
   - keeps itself out of the OOM killer's choice (oom_score_adj -1000 where it may; the agent gets 0 back);
   - starts PROGRAM (bwrap, whose namespace init stays in the group) in the monitor's own process group, so
     `serve`'s group signals reach the agent as before;
   - ignores SIGTERM/SIGINT/SIGHUP (they are for the agent: the monitor must outlive it to record its end);
   - ends the agent itself when the run's deadline (A + S ms after its start) passes, or when its runner is gone
     and nobody adopted the run (PREFIX.owner names a live process by pid and start time) within L ms:
     SIGTERM to the group, SIGKILL to every member after G ms (the namespace dies with its init), and ends what
     the agent left in its group once it has exited while no runner holds the run;
   - writes PREFIX.status ({"ending","exitCode","signal","startedAtMs","endedAtMs"}) when the agent has ended,
     and exits as the agent did (the same code, or the same signal), so a `serve` that is its parent sees
     exactly what it would have seen without it.
   Files are written whole, synced and renamed into place, mode 0600. One thread, plain system calls only. It
   sleeps until something happens: a signal (SIGCHLD, SIGUSR1 from a runner that adopted the run) read through a
   signalfd, its holder's exit through a pidfd (the runner, then whoever adopted the run), or its next deadline —
   no tick while the agent works. The agent gets the umask the monitor was started with (the operator's).

   dispatch-monitor --guard --runner-pid P -- PROGRAM [ARG...]

   `dispatch run` and the job-runner (whose agents die with them) start it in front of bwrap: bwrap's
   --die-with-parent arms the namespace's init only once the namespace is set up, so a runner killed during those
   milliseconds would leave the namespace and its agent running with nobody to end them. The guard is started with
   SIGUSR2 as its parent-death signal; when the runner dies (or is found gone), it SIGKILLs every member of its
   group — bwrap and the namespace's init among them, armed or not — and exits. No files; otherwise it behaves as
   the monitor does (own group, ignores SIGTERM/SIGINT/SIGHUP, exits as the agent did).

   dispatch-monitor --bridge --port P --socket PATH -- PROGRAM [ARG...]

   Inside an isolated attempt's own network namespace: relays 127.0.0.1:P to the run's egress-proxy socket
   (bridge.c, CONTRACT §10).

   dispatch-monitor --probe HOST PORT [--via PROXYPORT]

   The escape canary's network checks from inside an agent's namespaces (probe.c). */

#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <poll.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

enum ending { ENDING_NONE, ENDING_TIMED_OUT, ENDING_RUNNER_LOST };

static long long now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Time since boot, suspend included: a deadline does not stretch across a sleep of the machine. */
static long long monotonic_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_BOOTTIME, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Field 22 of /proc/PID/stat (start time in clock ticks since boot), or 0 when the process is gone or a zombie. */
static unsigned long long start_time(pid_t pid) {
    char path[64], buffer[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return 0;
    ssize_t n = read(fd, buffer, sizeof buffer - 1);
    close(fd);
    if (n <= 0) return 0;
    buffer[n] = 0;
    char *p = strrchr(buffer, ')');
    if (p == NULL) return 0;
    p += 2; /* the state */
    if (*p == 'Z' || *p == 'X') return 0;
    for (int field = 3; field < 22 && p != NULL; field++) {
        p = strchr(p, ' ');
        if (p != NULL) p++;
    }
    return p == NULL ? 0 : strtoull(p, NULL, 10);
}

/* The state, parent and process group of `pid` from /proc/PID/stat; -1 when it cannot be read. */
static int read_stat(pid_t pid, char *state, int *pgrp) {
    char path[64], buffer[1024];
    if (snprintf(path, sizeof path, "/proc/%d/stat", (int)pid) >= (int)sizeof path) return -1;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    ssize_t n = read(fd, buffer, sizeof buffer - 1);
    close(fd);
    if (n <= 0) return -1;
    buffer[n] = 0;
    char *p = strrchr(buffer, ')');
    int ppid = 0;
    if (p == NULL || sscanf(p + 1, " %c %d %d", state, &ppid, pgrp) != 3) return -1;
    return 0;
}

static int pidfd_open_raw(pid_t pid) { return (int)syscall(SYS_pidfd_open, pid, 0); }

/* Sends `sig` to every live member of the monitor's process group but the monitor itself (the group's leader):
   bwrap, the namespace's init and whatever of the agent did not leave the group. Returns how many it found. Each
   is signalled through a pidfd opened before its group is checked, so a pid reused between the look and the
   signal is never hit (a plain kill where pidfds are missing). */
static int signal_group(int sig) {
    pid_t me = getpid(), group = getpgrp();
    int found = 0;
    DIR *proc = opendir("/proc");
    if (proc == NULL) return 0;
    struct dirent *entry;
    while ((entry = readdir(proc)) != NULL) {
        char *end;
        long pid = strtol(entry->d_name, &end, 10);
        if (*end != 0 || pid <= 0 || pid == me) continue;
        int pidfd = pidfd_open_raw((pid_t)pid);
        int pidfd_error = pidfd < 0 ? errno : 0;
        char state = 0;
        int pgrp = 0;
        if (read_stat((pid_t)pid, &state, &pgrp) != 0 || pgrp != group || state == 'Z' || state == 'X') {
            if (pidfd >= 0) close(pidfd);
            continue;
        }
        found++;
        if (pidfd >= 0) {
            syscall(SYS_pidfd_send_signal, pidfd, sig, NULL, 0);
            close(pidfd);
        } else if (pidfd_error != ESRCH) {
            /* No pidfd to be had (an old kernel, a seccomp profile, no descriptor left): a plain kill. */
            kill((pid_t)pid, sig);
        }
    }
    closedir(proc);
    return found;
}

/* Ends the group but the monitor: SIGTERM, up to `grace_ms` to go, then SIGKILL until nobody is left. */
static void end_group(long long grace_ms) {
    if (signal_group(SIGTERM) == 0) return;
    long long until = monotonic_ms() + grace_ms;
    while (monotonic_ms() < until) {
        struct timespec pause = {0, 20 * 1000 * 1000};
        nanosleep(&pause, NULL);
        while (waitpid(-1, NULL, WNOHANG) > 0) {}
        if (signal_group(0) == 0) return;
    }
    for (int round = 0; round < 100 && signal_group(SIGKILL) > 0; round++) {
        struct timespec pause = {0, 10 * 1000 * 1000};
        nanosleep(&pause, NULL);
        while (waitpid(-1, NULL, WNOHANG) > 0) {}
    }
}

/* Writes `text` to `path` whole: a temporary file beside it, synced, then a rename; nothing is left on failure. */
static int write_file(const char *path, const char *text) {
    char temporary[4096];
    int length_needed = snprintf(temporary, sizeof temporary, "%s.tmp", path);
    if (length_needed < 0 || length_needed >= (int)sizeof temporary) {
        errno = ENAMETOOLONG;
        return -1;
    }
    int fd = open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0) return -1;
    size_t length = strlen(text), done = 0;
    while (done < length) {
        ssize_t n = write(fd, text + done, length - done);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        done += (size_t)n;
    }
    int failed = done < length || fsync(fd) != 0;
    int error = errno;
    if (close(fd) != 0 && !failed) {
        failed = 1;
        error = errno;
    }
    if (!failed && rename(temporary, path) == 0) return 0;
    if (!failed) error = errno;
    unlink(temporary);
    errno = error == 0 ? EIO : error;
    return -1;
}

/* Writes a small integer to a /proc file (an oom_score_adj); failures are ignored (an unprivileged monitor
   cannot lower its own). */
static void write_proc(const char *path, const char *value) {
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0) return;
    ssize_t ignored = write(fd, value, strlen(value));
    (void)ignored;
    close(fd);
}

/* The kernel's boot id, without its newline ("" when unreadable): a record from another boot names nothing here. */
static void boot_id(char *out, size_t size) {
    out[0] = 0;
    int fd = open("/proc/sys/kernel/random/boot_id", O_RDONLY | O_CLOEXEC);
    if (fd < 0) return;
    ssize_t n = read(fd, out, size - 1);
    close(fd);
    if (n <= 0) n = 0;
    out[n] = 0;
    for (ssize_t i = 0; i < n; i++) {
        if (out[i] == '\n' || out[i] == '"' || out[i] == '\\') out[i] = 0;
    }
}

/* Whether PREFIX.owner names a live process ("PID STARTTIME"): a runner that adopted the run. */
static int adopted(const char *owner_path) {
    char buffer[128];
    int fd = open(owner_path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return 0;
    ssize_t n = read(fd, buffer, sizeof buffer - 1);
    close(fd);
    if (n <= 0) return 0;
    buffer[n] = 0;
    int pid = 0;
    unsigned long long start = 0;
    if (sscanf(buffer, "%d %llu", &pid, &start) != 2 || pid <= 0) return 0;
    return start != 0 && start_time(pid) == start;
}

struct options {
    const char *record;
    long long allowed_ms, slack_ms, grace_ms, lease_ms;
    pid_t runner;
    char **command;
    const char *uid_lease;
};

/* A whole non-negative number of at most `max`, or -1. */
static long long number(const char *text, long long max) {
    char *end;
    errno = 0;
    long long value = strtoll(text, &end, 10);
    if (errno != 0 || end == text || *end != 0 || value < 0 || value > max) return -1;
    return value;
}

static int parse(int argc, char **argv, struct options *options) {
    memset(options, 0, sizeof *options);
    options->grace_ms = 5000;
    options->lease_ms = 30000;
    const long long day_ms = 366LL * 24 * 3600 * 1000 * 10; /* ten years: anything longer is a mistake */
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--") == 0) {
            if (i + 1 >= argc || argv[i + 1][0] != '/') return -1;
            options->command = argv + i + 1;
            return options->record == NULL || options->allowed_ms <= 0 ? -1 : 0;
        }
        if (i + 1 >= argc) return -1;
        const char *name = argv[i], *value = argv[++i];
        long long *field = NULL;
        if (strcmp(name, "--record") == 0) {
            if (value[0] != '/' || strlen(value) > 4000) return -1;
            options->record = value;
        } else if (strcmp(name, "--uid-lease") == 0) {
            if (value[0] != '/') return -1;
            options->uid_lease = value;
        } else if (strcmp(name, "--runner-pid") == 0) {
            long long pid = number(value, 4194304);
            if (pid <= 0) return -1;
            options->runner = (pid_t)pid;
        } else if (strcmp(name, "--allowed-ms") == 0) field = &options->allowed_ms;
        else if (strcmp(name, "--slack-ms") == 0) field = &options->slack_ms;
        else if (strcmp(name, "--grace-ms") == 0) field = &options->grace_ms;
        else if (strcmp(name, "--lease-ms") == 0) field = &options->lease_ms;
        else return -1;
        if (field != NULL && (*field = number(value, day_ms)) < 0) return -1;
    }
    return -1;
}

/* Default dispositions and no blocked signal; with `keep_usr`, SIGUSR1 and SIGUSR2 stay as they are. */
static void reset_signals(int keep_usr) {
    struct sigaction dfl = {0};
    dfl.sa_handler = SIG_DFL;
    for (int sig = 1; sig < NSIG; sig++) {
        if (keep_usr && (sig == SIGUSR1 || sig == SIGUSR2)) continue;
        if (sig != SIGKILL && sig != SIGSTOP) sigaction(sig, &dfl, NULL);
    }
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
}

/* Exits as the agent did: its exit code, or death by its signal. */
static void mirror(int status) {
    if (WIFEXITED(status)) _exit(WEXITSTATUS(status));
    int sig = WIFSIGNALED(status) ? WTERMSIG(status) : SIGKILL;
    /* A SIGUSR1 (an adopter's or an abandoner's wake-up) or SIGUSR2 still pending must not end the monitor in place
       of the agent's signal: ignoring them discards them, and they stay ignored. */
    signal(SIGUSR1, SIG_IGN);
    signal(SIGUSR2, SIG_IGN);
    reset_signals(1);
    prctl(PR_SET_DUMPABLE, 0); /* no core file of the monitor for the agent's SIGSEGV */
    kill(getpid(), sig);
    _exit(128 + sig);
}

static const char *ending_name(enum ending ending) {
    switch (ending) {
    case ENDING_TIMED_OUT: return "timedOut";
    case ENDING_RUNNER_LOST: return "runnerLost";
    default: return "exited";
    }
}

/* What the monitor and the guard both are before they start the agent: out of the OOM killer's choice (the run's
   largest process goes, never the one that records its end or ends it), leader of a group of their own (signals to
   it must never reach whoever started them), and deaf to SIGTERM/SIGINT/SIGHUP, which are for the agent. */
static void hold_group(void) {
    write_proc("/proc/self/oom_score_adj", "-1000");
    if (getpgrp() != getpid()) setpgid(0, 0);
    struct sigaction ignore = {0};
    ignore.sa_handler = SIG_IGN;
    sigaction(SIGTERM, &ignore, NULL);
    sigaction(SIGINT, &ignore, NULL);
    sigaction(SIGHUP, &ignore, NULL);
    sigaction(SIGPIPE, &ignore, NULL);
}

/* Starts the command in the caller's group, with default signals and umask `mask` (the one the monitor was
   started with: the operator's), as its child. */
static pid_t start(char **command, mode_t mask) {
    pid_t agent = fork();
    if (agent != 0) return agent;
    reset_signals(0);
    write_proc("/proc/self/oom_score_adj", "0");
    umask(mask);
    execv(command[0], command);
    fprintf(stderr, "dispatch-monitor: cannot start %s: %s\n", command[0], strerror(errno));
    _exit(127);
}

/* The guard: holds the command while its runner lives; SIGKILLs the whole group the moment the runner dies. */
static int guard(int argc, char **argv) {
    pid_t runner = 0;
    char **command = NULL;
    for (int i = 2; i < argc; i++) {
        if (strcmp(argv[i], "--") == 0) {
            command = i + 1 < argc ? argv + i + 1 : NULL;
            break;
        }
        if (strcmp(argv[i], "--runner-pid") == 0 && i + 1 < argc) runner = (pid_t)atoi(argv[++i]);
        else return 2;
    }
    if (command == NULL || runner <= 0 || command[0][0] != '/') return 2;
    sigset_t wake;
    sigemptyset(&wake);
    sigaddset(&wake, SIGCHLD);
    sigaddset(&wake, SIGUSR2); /* the parent-death signal the runner armed before exec */
    sigprocmask(SIG_BLOCK, &wake, NULL);
    if (getppid() != runner) return 125; /* the runner died before the guard could see it: start nothing */
    hold_group();
    mode_t operator_mask = umask(077);
    umask(operator_mask);
    pid_t agent = start(command, operator_mask);
    if (agent < 0) {
        fprintf(stderr, "dispatch-monitor: cannot fork: %s\n", strerror(errno));
        return 125;
    }
    /* Asleep until the agent exits (SIGCHLD) or the runner dies (SIGUSR2, armed before the exec above could race
       it, and the getppid() check covers a death before that): no tick. */
    for (;;) {
        int sig = sigwaitinfo(&wake, NULL);
        int status = 0;
        if (waitpid(agent, &status, WNOHANG) == agent) mirror(status);
        if (sig == SIGUSR2 || getppid() != runner) break;
    }
    for (int round = 0; round < 100 && signal_group(SIGKILL) > 0; round++) {
        struct timespec pause = {0, 10 * 1000 * 1000};
        nanosleep(&pause, NULL);
        while (waitpid(-1, NULL, WNOHANG) > 0) {}
    }
    _exit(128 + SIGKILL);
}

/* A pidfd for the process that holds the run now: the one PREFIX.owner names, alive with that start time, or -1. */
static int owner_pidfd(const char *owner_path) {
    char buffer[128];
    int fd = open(owner_path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) return -1;
    ssize_t n = read(fd, buffer, sizeof buffer - 1);
    close(fd);
    if (n <= 0) return -1;
    buffer[n] = 0;
    int pid = 0;
    unsigned long long start = 0;
    if (sscanf(buffer, "%d %llu", &pid, &start) != 2 || pid <= 0 || start == 0) return -1;
    int pidfd = pidfd_open_raw(pid);
    /* Checked after the pidfd is open: from here on the pid cannot be reused under it. */
    if (pidfd >= 0 && start_time(pid) != start) {
        close(pidfd);
        return -1;
    }
    return pidfd;
}

/* Whether `fd` (a pidfd) says its process has exited. */
static int has_exited(int fd) {
    struct pollfd watch = {fd, POLLIN, 0};
    return poll(&watch, 1, 0) > 0;
}

/* Who holds a monitored run: its runner, then whoever adopted it (through a pidfd each), or nobody since `since`. */
struct holder {
    int pidfd;
    int is_runner;
    long long orphaned_since;
};

/* Looks at who holds the run now; returns the ending that is due (the run lost: abandoned, or unheld for a lease). */
static enum ending check_holder(struct holder *holder, pid_t runner, const char *owner_path, const char *abandoned_path,
                                long long lease_ms, long long now) {
    if (holder->pidfd >= 0 && has_exited(holder->pidfd)) {
        close(holder->pidfd);
        holder->pidfd = -1;
        holder->is_runner = 0;
    }
    if (holder->is_runner && getppid() == runner) return ENDING_NONE;
    holder->is_runner = 0;
    if (access(abandoned_path, F_OK) == 0) return ENDING_RUNNER_LOST;
    if (holder->pidfd < 0) holder->pidfd = owner_pidfd(owner_path);
    /* Held by an adopter: through its pidfd, or — where none can be had — by its start time, looked at every second. */
    if (holder->pidfd >= 0 || adopted(owner_path)) {
        holder->orphaned_since = 0;
        return ENDING_NONE;
    }
    if (holder->orphaned_since == 0) holder->orphaned_since = now;
    return now - holder->orphaned_since >= lease_ms ? ENDING_RUNNER_LOST : ENDING_NONE;
}

/* Sleeps until a signal arrives on `signals`, the holder's pidfd fires, or `wake_at` (monotonic ms) comes. */
static void sleep_until(int signals, const struct holder *holder, long long wake_at, long long now) {
    struct pollfd watch[2] = {{signals, POLLIN, 0}, {holder->pidfd, POLLIN, 0}};
    long long wait_ms = wake_at - now;
    if (wait_ms < 0) wait_ms = 0;
    if (wait_ms > 3600 * 1000) wait_ms = 3600 * 1000;
    poll(watch, holder->pidfd >= 0 ? 2 : 1, (int)wait_ms);
    struct signalfd_siginfo info;
    while (read(signals, &info, sizeof info) == sizeof info) {}
}

static long long earliest(long long a, long long b) { return a < b ? a : b; }

int bridge(int argc, char **argv); /* bridge.c */
int probe(int argc, char **argv);  /* probe.c */

int main(int argc, char **argv) {
    if (argc > 1 && strcmp(argv[1], "--guard") == 0) return guard(argc, argv);
    if (argc > 1 && strcmp(argv[1], "--bridge") == 0) return bridge(argc, argv);
    if (argc > 1 && strcmp(argv[1], "--probe") == 0) return probe(argc, argv);
    struct options options;
    if (parse(argc, argv, &options) != 0) {
        fprintf(stderr, "usage: dispatch-monitor --record PREFIX --allowed-ms MS [--slack-ms MS] [--grace-ms MS] "
                        "[--lease-ms MS] [--runner-pid PID] [--uid-lease FILE] -- PROGRAM [ARG...]\n");
        return 2;
    }
    /* The run's agent uid stays leased while this monitor lives (a shared lock its runner holds too, taken before
       the agent starts): a serve that dies leaves the uid to this run until its agent is over. Close-on-exec: the
       agent never holds it, so it cannot let it go. */
    if (options.uid_lease != NULL) {
        int lease = open(options.uid_lease, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
        if (lease < 0 || flock(lease, LOCK_SH | LOCK_NB) != 0) {
            fprintf(stderr, "dispatch-monitor: cannot hold the agent uid lease %s: %s\n", options.uid_lease, strerror(errno));
            return 125;
        }
    }
    char monitor_path[4096], owner_path[4096], status_path[4096], abandoned_path[4096], text[512], boot[64];
    /* PREFIX is at most 4000 bytes (checked by parse): every name below fits. */
    snprintf(monitor_path, sizeof monitor_path, "%s.monitor", options.record);
    snprintf(owner_path, sizeof owner_path, "%s.owner", options.record);
    snprintf(status_path, sizeof status_path, "%s.status", options.record);
    /* Written by whoever ended the run as lost (its runner died before this monitor recorded itself): stop. */
    snprintf(abandoned_path, sizeof abandoned_path, "%s.abandoned", options.record);
    boot_id(boot, sizeof boot);
    mode_t operator_mask = umask(077);
    hold_group();
    sigset_t wake;
    sigemptyset(&wake);
    sigaddset(&wake, SIGCHLD);
    sigaddset(&wake, SIGUSR1);
    sigprocmask(SIG_BLOCK, &wake, NULL);

    /* The runner is named, not read from getppid(): one that died before this line would otherwise look alive. */
    pid_t runner = options.runner > 0 ? options.runner : getppid();
    long long started_ms = now_ms();
    long long started_mono = monotonic_ms();
    snprintf(text, sizeof text,
             "{\"pid\":%d,\"startTime\":%llu,\"bootId\":\"%s\",\"startedAtMs\":%lld,\"startedAtBootMs\":%lld,\"allowedMs\":%lld}\n",
             (int)getpid(), start_time(getpid()), boot, started_ms, started_mono, options.allowed_ms);
    if (write_file(monitor_path, text) != 0) {
        fprintf(stderr, "dispatch-monitor: cannot write %s: %s\n", monitor_path, strerror(errno));
        return 125;
    }
    if (access(abandoned_path, F_OK) == 0) {
        fprintf(stderr, "dispatch-monitor: the run was ended as lost before its agent started\n");
        return 125;
    }

    pid_t agent = start(options.command, operator_mask);
    if (agent < 0) {
        fprintf(stderr, "dispatch-monitor: cannot fork: %s\n", strerror(errno));
        return 125;
    }

    int signals = signalfd(-1, &wake, SFD_NONBLOCK | SFD_CLOEXEC);
    struct holder holder = {-1, 1, 0};
    if (getppid() == runner) holder.pidfd = pidfd_open_raw(runner);
    /* Checked again with the pidfd open: a runner that died in between may have left its pid to another process. */
    if (holder.pidfd >= 0 && getppid() != runner) {
        close(holder.pidfd);
        holder.pidfd = -1;
    }
    /* Without pidfds or a signalfd (an old kernel) the monitor looks every 100 ms, as it always did. */
    int ticking = signals < 0 || (holder.pidfd < 0 && getppid() == runner);
    long long deadline = started_mono + options.allowed_ms + options.slack_ms;
    long long kill_at = 0;
    enum ending ending = ENDING_NONE;
    int status = 0;
    for (;;) {
        pid_t reaped = waitpid(agent, &status, WNOHANG);
        if (reaped == agent) break;
        if (reaped < 0 && errno != EINTR) {
            status = SIGKILL; /* cannot happen: the agent is our child */
            break;
        }
        long long now = monotonic_ms();
        if (ending == ENDING_NONE && now >= deadline) ending = ENDING_TIMED_OUT;
        if (ending == ENDING_NONE) ending = check_holder(&holder, runner, owner_path, abandoned_path, options.lease_ms, now);
        if (ending != ENDING_NONE && kill_at == 0) {
            signal_group(SIGTERM);
            kill_at = now + options.grace_ms;
        }
        /* Ending: its holder no longer matters (an exited holder's pidfd would wake every poll at once). */
        if (ending != ENDING_NONE && holder.pidfd >= 0) {
            close(holder.pidfd);
            holder.pidfd = -1;
        }
        /* The namespace's init is in the group: with it every process of the namespace dies. Again every 100 ms
           until the agent is reaped. */
        if (kill_at != 0 && now >= kill_at) {
            signal_group(SIGKILL);
            kill_at = now + 100;
        }
        long long wake_at = ending == ENDING_NONE ? deadline : kill_at;
        /* Orphaned and not adopted: the lease runs out, and PREFIX.abandoned is looked for every second (an adopter
           or whoever abandons the run also sends SIGUSR1). */
        if (ending == ENDING_NONE && !holder.is_runner && holder.pidfd < 0) {
            wake_at = earliest(wake_at, earliest(holder.orphaned_since + options.lease_ms, now + 1000));
        }
        if (ticking) wake_at = earliest(wake_at, now + 100);
        if (signals >= 0) {
            sleep_until(signals, &holder, wake_at, now);
        } else {
            struct timespec tick = {0, 100 * 1000 * 1000};
            sigtimedwait(&wake, NULL, &tick);
        }
    }
    if (holder.pidfd >= 0) close(holder.pidfd);
    /* With its runner alive the runner ends what the agent left, after it has written the result (which never
       waits for a leftover holding stderr). With none, the monitor does: nothing outlives its run. */
    if (getppid() != runner && !adopted(owner_path)) end_group(options.grace_ms);

    snprintf(text, sizeof text,
             "{\"ending\":\"%s\",\"exitCode\":%d,\"signal\":%d,\"startedAtMs\":%lld,\"endedAtMs\":%lld}\n",
             ending_name(ending), WIFEXITED(status) ? WEXITSTATUS(status) : -1,
             WIFSIGNALED(status) ? WTERMSIG(status) : -1, started_ms, now_ms());
    if (write_file(status_path, text) != 0) {
        fprintf(stderr, "dispatch-monitor: cannot write %s: %s\n", status_path, strerror(errno));
    }
    mirror(status);
    return 0;
}
