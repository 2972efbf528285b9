/* What a program sizing itself sees: glibc's sysconf (which asks sysinfo(2)) and sysinfo.
 * Built with `gcc -static` at test time into the busybox rootfs (tests/test_e2e_sysinfo.py).
 * Prints one `key=value` per line; exits 1 when sysinfo fails (errno printed). */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/sysinfo.h>
#include <unistd.h>

int main(void) {
    struct sysinfo si;
    long page = sysconf(_SC_PAGESIZE);
    printf("phys=%lld\n", (long long)sysconf(_SC_PHYS_PAGES) * page);
    printf("avphys=%lld\n", (long long)sysconf(_SC_AVPHYS_PAGES) * page);
    memset(&si, 0, sizeof si);
    if (sysinfo(&si) != 0) {
        printf("errno=%d\n", errno);
        return 1;
    }
    printf("uptime=%ld\n", si.uptime);
    printf("totalram=%llu\n", (unsigned long long)si.totalram * si.mem_unit);
    printf("freeram=%llu\n", (unsigned long long)si.freeram * si.mem_unit);
    printf("totalswap=%llu\n", (unsigned long long)si.totalswap * si.mem_unit);
    printf("procs=%u\n", si.procs);
    printf("load1=%lu\n", si.loads[0]);
    return 0;
}
