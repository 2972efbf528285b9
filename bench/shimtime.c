/* shimtime: transparent wrapper around a shim binary that times its `start` action.
 *
 * containerd finds `containerd-shim-<name>-v2` on its PATH; the bench puts this wrapper (built
 * with -DREAL=... -DLOG=...) first, once per runtime, so both runtimes pay the same sub-ms
 * overhead. Any other action is exec'd directly. For `start`, the real shim's combined
 * stdout+stderr is relayed after it exits and "<id> <t0 ns> <t1 ns> <status>" (CLOCK_REALTIME,
 * comparable with containerd's log timestamps) is appended to LOG.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static long long now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

int main(int argc, char **argv) {
    const char *id = "?";
    int is_start = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "start") == 0) is_start = 1;
        if ((strcmp(argv[i], "-id") == 0 || strcmp(argv[i], "--id") == 0) && i + 1 < argc)
            id = argv[i + 1];
    }
    argv[0] = REAL;
    if (!is_start) {
        execv(REAL, argv);
        perror("shimtime: execv " REAL);
        return 127;
    }
    long long t0 = now_ns();
    int p[2];
    if (pipe(p) < 0) return 127;
    pid_t pid = fork();
    if (pid < 0) return 127;
    if (pid == 0) {
        dup2(p[1], 1);
        dup2(p[1], 2);
        close(p[0]);
        close(p[1]);
        execv(REAL, argv);
        _exit(127);
    }
    close(p[1]);
    static char buf[1 << 16];
    size_t len = 0;
    ssize_t n;
    while (len < sizeof buf && (n = read(p[0], buf + len, sizeof buf - len)) > 0) len += n;
    int status = 0;
    waitpid(pid, &status, 0);
    long long t1 = now_ns();
    if (len && write(1, buf, len) < 0) return 127;
    FILE *log = fopen(LOG, "a");
    if (log) {
        fprintf(log, "%s %lld %lld %d\n", id, t0, t1, WIFEXITED(status) ? WEXITSTATUS(status) : 128);
        fclose(log);
    }
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128;
}
