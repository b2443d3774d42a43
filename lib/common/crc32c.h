/* CRC-32C (Castagnoli), the checksum of stored records (docs/formats.md,
 * "Data directories"): catches any burst of up to 32 flipped bits and all
 * but 1 in 2^32 other damage. Not a defence against tampering. */
#ifndef RZ_COMMON_CRC32C_H
#define RZ_COMMON_CRC32C_H

#include <stddef.h>
#include <stdint.h>

#include "common/internal.h"

/* Continue `crc` (0 to start) over n bytes at p. */
RZ_HIDDEN uint32_t rz__crc32c(uint32_t crc, const void *p, size_t n);
/* The same from the table alone (what a CPU without SSE 4.2 computes). */
RZ_HIDDEN uint32_t rz__crc32c_table(uint32_t crc, const void *p, size_t n);

#endif
