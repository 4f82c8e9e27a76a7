#ifndef ZEROTRAIN_CRC32C_H
#define ZEROTRAIN_CRC32C_H
#include <stddef.h>
#include <stdint.h>
/// 1 when the CPU has the SSE4.2 crc32 instruction.
int zt_crc32c_hw_available(void);
/// CRC-32C of len bytes at data, continuing from crc (0 to start). Call only when available.
uint32_t zt_crc32c_hw(uint32_t crc, const void *data, size_t len);
#endif
