/* process_* metrics from /proc and getrusage: what an operator graphs
 * first for any daemon (docs/api.md "Metrics", docs/node.md "Local API"). */
#include <dirent.h>
#include <stdio.h>
#include <sys/resource.h>
#include <unistd.h>

#include <event2/buffer.h>

#include "procmetrics.h"

static unsigned long long open_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    if (!d)
        return 0;
    unsigned long long n = 0;
    for (struct dirent *e; (e = readdir(d));)
        if (e->d_name[0] != '.')
            n++;
    closedir(d);
    return n ? n - 1 : 0;   /* the listing's own descriptor */
}

void procmetrics_print(struct evbuffer *b, double start_s)
{
    struct rusage ru;
    double cpu = 0;
    if (getrusage(RUSAGE_SELF, &ru) == 0)
        cpu = (double)ru.ru_utime.tv_sec + (double)ru.ru_stime.tv_sec +
              ((double)ru.ru_utime.tv_usec + (double)ru.ru_stime.tv_usec) / 1e6;
    unsigned long long pages = 0, rss = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    if (f) {
        if (fscanf(f, "%llu %llu", &pages, &rss) != 2)
            rss = 0;
        fclose(f);
    }
    struct rlimit rl = { 0, 0 };
    (void)getrlimit(RLIMIT_NOFILE, &rl);
    long page = sysconf(_SC_PAGESIZE);
    unsigned long long psz = (unsigned long long)(page > 0 ? page : 4096);
    evbuffer_add_printf(b,
        "# HELP process_start_time_seconds Start time since the epoch.\n"
        "# TYPE process_start_time_seconds gauge\nprocess_start_time_seconds %.3f\n"
        "# HELP process_cpu_seconds_total User and system CPU time.\n"
        "# TYPE process_cpu_seconds_total counter\nprocess_cpu_seconds_total %.6f\n"
        "# HELP process_resident_memory_bytes Resident memory.\n"
        "# TYPE process_resident_memory_bytes gauge\nprocess_resident_memory_bytes %llu\n"
        "# HELP process_virtual_memory_bytes Virtual memory.\n"
        "# TYPE process_virtual_memory_bytes gauge\nprocess_virtual_memory_bytes %llu\n"
        "# HELP process_open_fds Open file descriptors.\n"
        "# TYPE process_open_fds gauge\nprocess_open_fds %llu\n"
        "# HELP process_max_fds The file descriptor limit.\n"
        "# TYPE process_max_fds gauge\nprocess_max_fds %llu\n",
        start_s, cpu, rss * psz, pages * psz, open_fds(),
        (unsigned long long)rl.rlim_cur);
}
