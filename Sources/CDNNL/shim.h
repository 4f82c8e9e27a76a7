#ifndef ZEROTRAIN_CDNNL_SHIM_H
#define ZEROTRAIN_CDNNL_SHIM_H
// oneDNN's C API (Debian's libdnnl-dev, built with the OpenMP runtime) and the few OpenMP entry
// points ZeroTrain's thread pool uses so that it runs on the same threads as oneDNN (libgomp is
// oneDNN's own runtime; no second runtime is loaded).
#include <oneapi/dnnl/dnnl.h>

int omp_get_thread_num(void);
int omp_get_num_threads(void);
int omp_get_max_threads(void);
void omp_set_num_threads(int num_threads);
int omp_in_parallel(void);
void omp_set_max_active_levels(int levels);
// libgomp's entry point for `#pragma omp parallel num_threads(n)`: runs fn(data) on a team of n.
void GOMP_parallel(void (*fn)(void *), void *data, unsigned num_threads, unsigned flags);
#endif
