/* sysloop: ns per syscall, from inside a container (its seccomp filter applies: run it with
 * `ctr task exec`, which installs the container's filter, not nsenter).
 *
 * usage: sysloop sysinfo|getppid ITERATIONS
 * Prints "<ns per call> <errors>". Built with `gcc -static -O2` at bench time.
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/sysinfo.h>
#include <time.h>
#include <unistd.h>

static long long now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: sysloop sysinfo|getppid ITERATIONS\n");
        return 2;
    }
    int use_sysinfo = strcmp(argv[1], "sysinfo") == 0;
    long n = atol(argv[2]), errors = 0;
    struct sysinfo si;
    long long t0 = now_ns();
    for (long i = 0; i < n; i++) {
        long r = use_sysinfo ? sysinfo(&si) : syscall(SYS_getppid); /* not cached by libc */
        if (r < 0) errors++;
    }
    long long t1 = now_ns();
    printf("%.1f %ld\n", (double)(t1 - t0) / (n ? n : 1), errors);
    return 0;
}
