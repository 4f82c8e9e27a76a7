#ifndef ZEROTRAIN_CNUMA_SHIM_H
#define ZEROTRAIN_CNUMA_SHIM_H
#include <numa.h>
#include <numaif.h>
#endif
