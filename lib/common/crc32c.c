/* CRC-32C, reflected polynomial 0x82F63B78, bit at a time: the records it
 * covers are tens of bytes, next to B-tree work that costs far more, and
 * no table means nothing to initialise or share between threads. */
#include "common/crc32c.h"

uint32_t rz__crc32c(uint32_t crc, const void *p, size_t n)
{
    const uint8_t *b = p;
    crc = ~crc;
    while (n--) {
        crc ^= *b++;
        for (int k = 0; k < 8; k++)
            crc = (crc >> 1) ^ (0x82F63B78u & (0u - (crc & 1u)));
    }
    return ~crc;
}
