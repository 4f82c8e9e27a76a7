#ifndef ZEROTRAIN_CZEROMQ_SHIM_H
#define ZEROTRAIN_CZEROMQ_SHIM_H
#include <zmq.h>
#endif
