#ifndef ZEROTRAIN_CZLIB_SHIM_H
#define ZEROTRAIN_CZLIB_SHIM_H
#include <zlib.h>
/* inflateInit2 is a macro; this is its function form for Swift. */
static inline int zt_inflate_init(z_streamp strm, int windowBits) {
    return inflateInit2_(strm, windowBits, ZLIB_VERSION, (int)sizeof(z_stream));
}
static inline int zt_deflate_init(z_streamp strm, int level, int windowBits) {
    return deflateInit2_(strm, level, Z_DEFLATED, windowBits, 8, Z_DEFAULT_STRATEGY, ZLIB_VERSION, (int)sizeof(z_stream));
}
#endif
