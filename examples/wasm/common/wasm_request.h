/* What the WebAssembly demo steps share (wasm-hash, wasm-file): their
 * request's size cap, reading its flat JSON without a JSON library (no
 * escapes in the values they read), and FNV-1a. Static: each step is one
 * file built alone for wasm32-wasi (examples/wasm/meson.build). */
#ifndef RHIZOS_EXAMPLE_WASM_REQUEST_H
#define RHIZOS_EXAMPLE_WASM_REQUEST_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_REQUEST (1u << 20)
#define FNV_OFFSET 0xcbf29ce484222325ull

/* The string value of "key": "..." into out (cut to n - 1 bytes); 0 when
 * there is none. */
static int find_str(const char *json, const char *key, char *out, size_t n)
{
    char pat[64];
    snprintf(pat, sizeof pat, "\"%s\"", key);
    const char *p = strstr(json, pat);
    if (!p || !(p = strchr(p + strlen(pat), ':')))
        return 0;
    while (*++p == ' ')
        ;
    if (*p != '"')
        return 0;
    size_t i = 0;
    for (p++; *p && *p != '"' && i + 1 < n; p++)
        out[i++] = *p;
    out[i] = '\0';
    return 1;
}

/* The number after "key":, or dflt when the key is missing. */
static long find_num(const char *json, const char *key, long dflt)
{
    char pat[64];
    snprintf(pat, sizeof pat, "\"%s\"", key);
    const char *p = strstr(json, pat);
    if (!p || !(p = strchr(p + strlen(pat), ':')))
        return dflt;
    return strtol(p + 1, NULL, 10);
}

/* FNV-1a of n bytes, going on from h (FNV_OFFSET to start). */
static uint64_t fnv1a(const void *data, size_t n, uint64_t h)
{
    const unsigned char *p = data;
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= 0x100000001b3ull;
    }
    return h;
}

#endif
