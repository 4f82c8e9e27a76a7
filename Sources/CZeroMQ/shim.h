#ifndef ZEROTRAIN_CZEROMQ_SHIM_H
#define ZEROTRAIN_CZEROMQ_SHIM_H
#include <zmq.h>
// The wake-up eventfd that a daemon's zmq_poll set holds beside its sockets (not in Swift's Glibc module).
#include <sys/eventfd.h>
#endif
