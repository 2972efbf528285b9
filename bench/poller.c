/* vpoll: read a view file every INTERVAL_US from inside a container and classify each read.
 *
 * usage: vpoll FILE EXPECT DURATION_S [INTERVAL_US]
 * Every read is open/read-to-EOF/close of FILE. It is "ok" when the content contains EXPECT
 * (e.g. "MemTotal:         262144 kB"), "host" when it is readable but does not (the
 * container's own procfs file, i.e. the host's numbers, showed through), "fail" on an error
 * or an empty read. Prints one line per change of class:
 *   "<monotonic ns> <class> <errno or 0>"
 * and at the end "end <reads> <ok> <host> <fail>". Built with `gcc -static -O2`.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static long long now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

int main(int argc, char **argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: %s FILE EXPECT DURATION_S [INTERVAL_US]\n", argv[0]);
        return 2;
    }
    const char *path = argv[1], *expect = argv[2];
    long long end = now_ns() + (long long)(atof(argv[3]) * 1e9);
    long interval = argc > 4 ? atol(argv[4]) : 1000;
    static char buf[1 << 16];
    long reads = 0, counts[3] = {0, 0, 0};
    int last = -1;
    setvbuf(stdout, NULL, _IOLBF, 0);
    while (now_ns() < end) {
        int cls, err = 0;
        int fd = open(path, O_RDONLY);
        long total = 0;
        if (fd < 0) {
            cls = 2, err = errno;
        } else {
            ssize_t n;
            while ((n = read(fd, buf + total, sizeof buf - 1 - total)) > 0) total += n;
            if (n < 0) err = errno;
            close(fd);
            buf[total] = 0;
            cls = (err || total == 0) ? 2 : strstr(buf, expect) ? 0 : 1;
        }
        reads++;
        counts[cls]++;
        if (cls != last) {
            static const char *names[] = {"ok", "host", "fail"};
            printf("%lld %s %d\n", now_ns(), names[cls], err);
            last = cls;
        }
        usleep(interval);
    }
    printf("end %ld %ld %ld %ld\n", reads, counts[0], counts[1], counts[2]);
    return 0;
}
