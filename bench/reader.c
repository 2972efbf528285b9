/* vread: time open+read+close of one file, from inside a container (busybox has no timer).
 *
 * usage: vread FILE ITERATIONS [PROCS]
 * Forks PROCS readers (default 1) that start together and each loop ITERATIONS times over
 * open(FILE)/read-until-EOF/close. Prints one line per reader:
 *   "<ns per iteration> <errors> <bytes of the last read>"
 * Built with `gcc -static -O2` at bench time into the busybox rootfs.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static long long now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void reader(const char *path, long iterations, int go_fd, int out_fd) {
    static char buf[1 << 16];
    char c;
    long errors = 0, last = 0;
    if (go_fd >= 0 && read(go_fd, &c, 1) != 1) /* wait until every reader is forked */
        _exit(3);
    long long t0 = now_ns();
    for (long i = 0; i < iterations; i++) {
        int fd = open(path, O_RDONLY);
        if (fd < 0) { errors++; continue; }
        long total = 0;
        ssize_t n;
        while ((n = read(fd, buf, sizeof buf)) > 0) total += n;
        if (n < 0) errors++; /* an empty file is not an error: empty diskstats is legitimate */
        last = total;
        close(fd);
    }
    long long t1 = now_ns();
    dprintf(out_fd, "%lld %ld %ld\n", (t1 - t0) / iterations, errors, last);
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: %s FILE ITERATIONS [PROCS]\n", argv[0]);
        return 2;
    }
    long iterations = atol(argv[2]);
    int procs = argc > 3 ? atoi(argv[3]) : 1;
    if (iterations < 1 || procs < 1) return 2;
    if (procs == 1) {
        reader(argv[1], iterations, -1, 1);
        return 0;
    }
    int go[2];
    if (pipe(go) < 0) return 1;
    for (int p = 0; p < procs; p++) {
        pid_t pid = fork();
        if (pid < 0) return 1;
        if (pid == 0) {
            close(go[1]);
            reader(argv[1], iterations, go[0], 1);
            _exit(0);
        }
    }
    close(go[0]);
    for (int p = 0; p < procs; p++) /* release all readers at once */
        if (write(go[1], "g", 1) != 1) return 1;
    close(go[1]);
    int status, rc = 0;
    while (wait(&status) > 0)
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) rc = 1;
    return rc;
}
