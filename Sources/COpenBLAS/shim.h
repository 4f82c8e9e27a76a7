#ifndef ZEROTRAIN_COPENBLAS_SHIM_H
#define ZEROTRAIN_COPENBLAS_SHIM_H
#include <cblas.h>
// Declared by OpenBLAS's cblas.h on Debian; repeated here in case another cblas.h is found first.
void openblas_set_num_threads(int num_threads);
int openblas_get_num_threads(void);
char* openblas_get_corename(void);
#endif
