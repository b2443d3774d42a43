/* The undo log powercut_preload.c writes and test_powercut.c plays back:
 * records of this header, then the file's path (path_len bytes), then for
 * a write ('W') the old_len bytes it overwrote. A sync ('S') makes every
 * earlier write to that path durable. */
#ifndef RHIZOS_TEST_POWERCUT_H
#define RHIZOS_TEST_POWERCUT_H

#include <stdint.h>

#define POWERCUT_EXIT 42   /* the process died as the power went */

typedef struct powercut_rec {
    char kind;             /* 'W' or 'S' */
    uint32_t path_len;
    uint64_t off, len;     /* the write's place and length */
    uint64_t old_len;      /* of those bytes, how many the file had */
} powercut_rec;

#endif
