#ifndef ZEROTRAIN_CZSTD_SHIM_H
#define ZEROTRAIN_CZSTD_SHIM_H
#include <zstd.h>
#endif
