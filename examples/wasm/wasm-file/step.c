/* A demo WASI step with files (issue 16): a file output written under
 * $RZ_OUTPUT_DIR and, when given, a file input read from the path the
 * runner hands over (inside /rz/in/files, read-only). config.bytes > 0
 * writes that many bytes (a pattern); else the input is copied. Answers
 * {"data": "copy/out.bin", "size", "fnv", "input"} on stdout: the input's
 * path, size and FNV-1a (or those of what it wrote, with no input). */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "wasm_request.h"

int main(void)
{
    static char req[MAX_REQUEST + 1];
    size_t len = fread(req, 1, MAX_REQUEST, stdin);
    req[len] = '\0';
    const char *dir = getenv("RZ_OUTPUT_DIR");
    if (!dir) {
        fprintf(stderr, "no RZ_OUTPUT_DIR\n");
        return 2;
    }
    char out_dir[512], out_path[600], in_path[1024] = "";
    snprintf(out_dir, sizeof out_dir, "%s/copy", dir);
    snprintf(out_path, sizeof out_path, "%s/out.bin", out_dir);
    if (mkdir(out_dir, 0755) != 0 && errno != EEXIST) {
        fprintf(stderr, "%s: %s\n", out_dir, strerror(errno));
        return 3;
    }
    FILE *out = fopen(out_path, "wb");
    if (!out) {
        fprintf(stderr, "%s: %s\n", out_path, strerror(errno));
        return 3;
    }
    long bytes = find_num(req, "bytes", 0);
    uint64_t h = FNV_OFFSET, size = 0;
    int has_in = find_str(req, "data", in_path, sizeof in_path);
    FILE *in = has_in ? fopen(in_path, "rb") : NULL;
    if (has_in && !in) {
        fprintf(stderr, "%s: %s\n", in_path, strerror(errno));
        return 4;
    }
    unsigned char buf[4096];
    for (;;) {
        size_t n = 0;
        if (in)
            n = fread(buf, 1, sizeof buf, in);
        else
            for (; n < sizeof buf && (long)(size + n) < bytes; n++)
                buf[n] = (unsigned char)((size + n) * 7);
        if (n == 0)
            break;
        h = fnv1a(buf, n, h);
        size += n;
        if (fwrite(buf, 1, n, out) != n) {
            fprintf(stderr, "%s: %s\n", out_path, strerror(errno));
            return 6;
        }
    }
    if (fclose(out) != 0)
        return 6;
    printf("{\"data\":\"copy/out.bin\",\"size\":%llu,\"fnv\":\"%016llx\","
           "\"input\":\"%s\"}\n", (unsigned long long)size, (unsigned long long)h,
           in_path);
    return 0;
}
